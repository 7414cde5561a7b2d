"""The public API's rate limits per company and per token: 429 `rate_limited` with Retry-After, in-process and
in Redis (shared by every process), and nothing taken from a bucket by a refused request."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.api_support import PUBLIC, bearer
from tests.conftest import FakeClock
from tests.reports_support import provision, report_app
from tests.services import require_redis
from tests.waiting import eventually
from wabapool.domain.rate import BucketRule
from wabapool.rate_limit import InProcessBuckets, PublicRateLimits, RedisBuckets

COMPANY_BURST = 4
TOKEN_BURST = 3
# Slow refill: nothing comes back while a case runs (Redis refills on its own clock).
SLOW = 0.01


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["in_process", "redis"])
async def api(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[tuple[httpx.AsyncClient, Clock]]:
    clock = Clock()
    async with report_app(f"sqlite:///{tmp_path / 'rate.db'}", FakeClock(datetime(2026, 11, 10, tzinfo=UTC))) as (
        client,
        context,
    ):
        await provision(client, 1)
        await provision(client, 2, wabas=("2002002",))
        if request.param == "redis":
            buckets = RedisBuckets(require_redis(), key_prefix=f"wabapool:test:rate:{uuid.uuid4().hex}:")
        else:
            buckets = InProcessBuckets(clock=clock)
        context.rate_limits = PublicRateLimits(
            buckets, per_company=BucketRule(SLOW, COMPANY_BURST), per_token=BucketRule(SLOW, TOKEN_BURST)
        )
        try:
            yield client, clock
        finally:
            await buckets.close()


async def info(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.get(f"{PUBLIC}/billings/info", headers=headers)


async def test_a_token_past_its_burst_gets_429_rate_limited_with_retry_after(api) -> None:
    client, _clock = api
    token = bearer(1, "owner")
    assert [(await info(client, token)).status_code for _ in range(TOKEN_BURST)] == [200] * TOKEN_BURST
    refused = await info(client, token)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers.get("x-request-id")


async def test_a_company_s_tokens_share_its_bucket(api) -> None:
    client, _clock = api
    first, second = bearer(1, "owner"), bearer(1, "admin")
    assert [(await info(client, first)).status_code for _ in range(TOKEN_BURST)] == [200] * TOKEN_BURST
    assert (await info(client, second)).status_code == 200  # the company's fourth
    assert (await info(client, second)).status_code == 429  # the company's bucket is empty, not the token's


async def test_another_company_keeps_its_own_budget(api) -> None:
    client, _clock = api
    hungry = bearer(1, "owner")
    for _ in range(TOKEN_BURST + 2):
        await info(client, hungry)
    assert (await info(client, bearer(2, "owner"))).status_code == 200


async def test_a_refused_request_takes_nothing_from_the_other_bucket(api) -> None:
    client, _clock = api
    first, second, third = bearer(1, "owner"), bearer(1, "admin"), bearer(1, "supervisor")
    for _ in range(TOKEN_BURST):
        assert (await info(client, first)).status_code == 200
    assert (await info(client, second)).status_code == 200  # the company's last token
    for _ in range(3):
        assert (await info(client, third)).status_code == 429  # refused by the company: the token keeps its own
    assert (await info(client, first)).status_code == 429


async def test_the_in_process_bucket_lets_requests_through_again_as_it_refills(tmp_path) -> None:
    clock = Clock()
    async with report_app(f"sqlite:///{tmp_path / 'refill.db'}", FakeClock(datetime(2026, 11, 10, tzinfo=UTC))) as (
        client,
        context,
    ):
        await provision(client, 1)
        context.rate_limits = PublicRateLimits(
            InProcessBuckets(clock=clock), per_company=BucketRule(10, 100), per_token=BucketRule(1.0, 1)
        )
        token = bearer(1, "owner")
        assert (await info(client, token)).status_code == 200
        refused = await info(client, token)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        clock.now += 1.0
        assert (await info(client, token)).status_code == 200


async def test_the_redis_bucket_refills_on_redis_s_clock(tmp_path) -> None:
    async with report_app(f"sqlite:///{tmp_path / 'refill.db'}", FakeClock(datetime(2026, 11, 10, tzinfo=UTC))) as (
        client,
        context,
    ):
        await provision(client, 1)
        buckets = RedisBuckets(require_redis(), key_prefix=f"wabapool:test:rate:{uuid.uuid4().hex}:")
        # A token back every half second: the bucket of one is drained at once and refills while the test waits.
        context.rate_limits = PublicRateLimits(buckets, per_company=BucketRule(100, 100), per_token=BucketRule(2.0, 1))
        token = bearer(1, "owner")

        async def answered(status: int) -> bool:
            return (await info(client, token)).status_code == status

        try:
            assert await answered(200)
            # Refused once the token is spent (waited for, so a slow machine's pause between requests, which
            # refills the bucket, is not taken for a bucket that never empties).
            await eventually(lambda: answered(429), what="a request refused by the emptied bucket of one")
            # RedisBuckets reads no clock of this process: the refill is Redis's TIME passing.
            await eventually(lambda: answered(200), what="a token to come back on Redis's clock")
        finally:
            await buckets.close()


async def test_an_unreachable_redis_lets_requests_through(tmp_path) -> None:
    async with report_app(f"sqlite:///{tmp_path / 'down.db'}", FakeClock(datetime(2026, 11, 10, tzinfo=UTC))) as (
        client,
        context,
    ):
        await provision(client, 1)
        buckets = RedisBuckets("redis://127.0.0.1:1/0")  # nothing listens on port 1
        context.rate_limits = PublicRateLimits(buckets, per_company=BucketRule(SLOW, 1), per_token=BucketRule(SLOW, 1))
        try:
            statuses = [(await info(client, bearer(1, "owner"))).status_code for _ in range(3)]
        finally:
            await buckets.close()
        assert statuses == [200, 200, 200]
