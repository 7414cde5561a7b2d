"""Honest outcomes on real PostgreSQL: a failed commit is `outcome_unknown`, a lock past its limit writes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.api_support import INTERNAL, INTERNAL_HEADERS, deduction_body, provision, settings_for
from tests.conftest import truncate_all
from wabapool import bootstrap
from wabapool.service.reconcile import reconcile
from wabapool.storage.database import Database

pytestmark = pytest.mark.postgres
COMPANY = 31
WABA = "3100001"


class Fault:
    """Breaks one commit, after `skip` good ones: the connection killed before it, or the reply lost after it."""

    def __init__(self, when: Literal["before", "after"]) -> None:
        self.when = when
        self.skip: int | None = None  # None: disarmed
        self.fired = 0

    async def __call__(self, point: str, connection: AsyncConnection) -> None:
        if self.skip is None or point != self.when:
            return
        if self.skip:
            self.skip -= 1
            return
        self.skip = None
        self.fired += 1
        if point == "before":
            pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            killer = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
            try:
                await killer.execute("SELECT pg_terminate_backend($1)", pid)
            finally:
                await killer.close()
        else:
            raise ConnectionResetError("the commit's reply was lost")


@asynccontextmanager
async def _http(postgres_url: str, database: Database, **context: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(postgres_url)
    app_context = bootstrap.app_context(settings, database=database, **context)

    transport = httpx.ASGITransport(app=bootstrap.create_app(settings, context=app_context))
    async with httpx.AsyncClient(transport=transport, base_url="http://wabapool.test") as client:
        client.context = app_context  # type: ignore[attr-defined]
        yield client
    await database.dispose()


# How long a test waits for a state it brought about (a lock wait, a queued deduction): a bound on a failure.
WAIT_SECONDS = 30.0


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll `condition` until it holds (the state, not the clock, decides when the test goes on)."""
    async with asyncio.timeout(WAIT_SECONDS):
        while not await condition():
            await asyncio.sleep(0.01)


def _lock_waiters(postgres_url: str) -> Callable[[], Awaitable[bool]]:
    """Whether some backend of the test database waits for a lock (a group blocked on the held pool row)."""

    async def waiting() -> bool:
        connection = await asyncpg.connect(postgres_url)
        try:
            count = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        finally:
            await connection.close()
        return bool(count)

    return waiting


def _queued(http: httpx.AsyncClient, count: int) -> Callable[[], Awaitable[bool]]:
    """Whether `count` deductions wait in the app's queue (behind the group that holds the pool)."""
    committer = http.context.service._group_commit  # type: ignore[attr-defined]  # noqa: SLF001

    async def queued() -> bool:
        return sum(committer._queued_items.values()) == count  # noqa: SLF001 - the queue's own count

    return queued


async def _deduct(http: httpx.AsyncClient, code: str) -> httpx.Response:
    return await http.post(
        f"{INTERNAL}/quota-managements/deduction",
        json=deduction_body(COMPANY, code, waba_id=WABA),
        headers=INTERNAL_HEADERS,
    )


async def _batch(http: httpx.AsyncClient, codes: list[str]) -> httpx.Response:
    items = [deduction_body(COMPANY, code, waba_id=WABA) for code in codes]
    return await http.post(f"{INTERNAL}/quota-managements/deductions", json={"items": items}, headers=INTERNAL_HEADERS)


@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_commit_that_fails_tells_every_caller_of_the_group_outcome_unknown_and_a_retry_applies_once(
    postgres_url: str, when: Literal["before", "after"]
) -> None:
    fault = Fault(when)
    database = Database(postgres_url, commit_hook=fault)
    await truncate_all(database)
    async with _http(postgres_url, database) as http:
        await provision(http, COMPANY, wabas=(WABA,), allowance=100_000, postpaid_limit=0, unit_price=1_000)
        holder = await asyncpg.connect(postgres_url)
        try:
            async with holder.transaction():
                # While a first group waits for the pool, a batch and a single queue into the next group.
                await holder.execute("SELECT id FROM organization_packages WHERE company_id = $1 FOR UPDATE", COMPANY)
                first = asyncio.ensure_future(_deduct(http, "w0"))
                await _until(_lock_waiters(postgres_url))
                batch = asyncio.ensure_future(_batch(http, ["b1", "b2", "b3"]))
                single = asyncio.ensure_future(_deduct(http, "s1"))
                await _until(_queued(http, 4))
                fault.skip = 1  # the first group commits; the second one's commit breaks
        finally:
            await holder.close()
        assert (await first).status_code == 200
        single_answer, batch_answer = await single, await batch
        assert fault.fired == 1
        assert single_answer.status_code == 503 and single_answer.headers["Retry-After"] == "1"
        assert single_answer.json()["error"]["code"] == "outcome_unknown"
        assert batch_answer.status_code == 200
        assert [r["error"]["code"] for r in batch_answer.json()["results"]] == ["outcome_unknown"] * 3
        retried_batch, retried_single = await asyncio.gather(_batch(http, ["b1", "b2", "b3"]), _deduct(http, "s1"))
        committed = when == "after"  # the reply was lost after the commit; before it, nothing was stored
        assert retried_single.status_code == 200 and retried_single.json()["replayed"] is committed
        expected = "replayed" if committed else "applied"
        assert [r["status"] for r in retried_batch.json()["results"]] == [expected] * 3
        info = (await http.get(f"{INTERNAL}/quota-managements/{COMPANY}/balance", headers=INTERNAL_HEADERS)).json()
        assert info["total"] == 100_000 - 5 * 1_000
        report = await reconcile(http.context.service.database)  # type: ignore[attr-defined]
        assert report.ok and report.checks["deductions"] == 5, report.violations


async def test_a_pool_lock_held_past_lock_timeout_answers_503_and_writes_nothing(postgres_url: str) -> None:
    database = Database(postgres_url, lock_timeout_ms=200)
    await truncate_all(database)
    async with _http(postgres_url, database) as http:
        await provision(http, COMPANY, wabas=(WABA,), allowance=100_000, postpaid_limit=0)
        holder = await asyncpg.connect(postgres_url)
        try:
            async with holder.transaction():
                await holder.execute("SELECT id FROM organization_packages WHERE company_id = $1 FOR UPDATE", COMPANY)
                answer = await _deduct(http, "late")
            assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
            assert answer.json()["error"]["code"] == "unavailable"
            assert await holder.fetchval("SELECT count(*) FROM deduction_requests") == 0
        finally:
            await holder.close()
        assert (await _deduct(http, "late")).status_code == 200  # the lock is free again: the retry applies


async def test_a_full_queue_answers_503_with_retry_after_and_writes_nothing_for_the_refused(postgres_url: str) -> None:
    database = Database(postgres_url)
    await truncate_all(database)
    async with _http(postgres_url, database, max_queued_per_pool=2) as http:
        await provision(http, COMPANY, wabas=(WABA,), allowance=100_000, postpaid_limit=0)
        holder = await asyncpg.connect(postgres_url)
        try:
            async with holder.transaction():
                await holder.execute("SELECT id FROM organization_packages WHERE company_id = $1 FOR UPDATE", COMPANY)
                first = asyncio.ensure_future(_deduct(http, "q0"))  # its group waits for the lock
                await _until(_lock_waiters(postgres_url))
                queued = [asyncio.ensure_future(_deduct(http, f"q{i}")) for i in range(1, 3)]
                await _until(_queued(http, 2))
                refused = await _deduct(http, "q3")
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
            assert refused.json()["error"]["code"] == "overloaded"
            assert {(await task).status_code for task in (first, *queued)} == {200}
        finally:
            await holder.close()
        async with database.read() as connection:
            codes = set((await connection.execute(text("SELECT unique_code FROM deduction_requests"))).scalars())
        assert codes == {"q0", "q1", "q2"}
