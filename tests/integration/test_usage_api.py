"""GET /usage: the daily roll-up per day (company timezone) and per WABA, kept in the deduction's transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.api_support import PUBLIC, bearer
from tests.conftest import FakeClock
from tests.reports_support import database_url, deduct, provision, refund, report_app

A, B = "5550001", "5550002"
JAKARTA = ZoneInfo("Asia/Jakarta")


@pytest.fixture(params=["sqlite", "postgres"])
async def app(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[tuple[httpx.AsyncClient, FakeClock]]:
    postgres = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    # 23:30 in Jakarta (UTC+7) on 10 November: an hour later it is the 11th there, still the 10th in UTC.
    clock = FakeClock(datetime(2026, 11, 10, 16, 30, tzinfo=UTC))
    async with report_app(database_url(request.param, tmp_path, postgres), clock) as (client, _context):
        await provision(client, 1, wabas=(A, B))
        await provision(client, 2, wabas=("5559999",))
        yield client, clock


async def usage(client: httpx.AsyncClient, company_id: int = 1, **params: str) -> dict:
    response = await client.get(f"{PUBLIC}/usage", params=params, headers=bearer(company_id, "member"))
    assert response.status_code == 200, response.text
    return response.json()


async def all_log_rows(client: httpx.AsyncClient) -> list[dict]:
    rows, cursor = [], None
    while True:
        params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"{PUBLIC}/mcc_logs", params=params, headers=bearer(1))).json()
        rows += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


async def test_usage_counts_each_day_in_the_company_timezone_and_takes_a_refund_back_on_its_day(app) -> None:
    client, clock = app
    await client.put(f"{PUBLIC}/billing_preferences", json={"show_waba_id": True}, headers=bearer(1))
    await deduct(client, 1, "m1", waba_id=A)
    await deduct(client, 1, "m2", waba_id=A, quantity=2)
    await deduct(client, 1, "m3", waba_id=B)
    await deduct(client, 2, "other", waba_id="5559999", quantity=7)
    clock.advance(hours=1)  # 00:30 on the 11th in Jakarta
    await deduct(client, 1, "m4", waba_id=A, quantity=3)
    await refund(client, 1, "m2", "r-m2")  # a refund on the 11th of a deduction made on the 10th

    body = await usage(client, **{"from": "2026-11-10", "to": "2026-11-11"})

    assert body["currency"] == "IDR"
    days = {day["date"]: day for day in body["days"]}
    assert list(days) == ["2026-11-10", "2026-11-11"]
    assert days["2026-11-10"]["amount"] == 4_000 and days["2026-11-10"]["messages"] == 4
    assert days["2026-11-11"]["amount"] == 3_000 - 2_000 and days["2026-11-11"]["messages"] == 3 - 2
    assert days["2026-11-10"]["by_waba"] == [
        {"waba_id": A, "amount": 3_000, "messages": 3},
        {"waba_id": B, "amount": 1_000, "messages": 1},
    ]
    assert days["2026-11-11"]["by_waba"] == [{"waba_id": A, "amount": 1_000, "messages": 1}]


async def test_usage_defaults_to_the_current_cycle_in_the_company_timezone(app) -> None:
    client, _clock = app
    await deduct(client, 1, "m1", waba_id=B)
    body = await usage(client)
    dates = [day["date"] for day in body["days"]]
    # Cycles are anchored on day 1: all of November in Jakarta, empty days included.
    assert dates[0] == "2026-11-01" and dates[-1] == "2026-11-30" and len(dates) == 30
    assert sum(day["amount"] for day in body["days"]) == 1_000


async def test_usage_filtered_by_waba_shows_only_it_and_another_companys_waba_is_not_found(app) -> None:
    client, _clock = app
    await deduct(client, 1, "m1", waba_id=A)
    await deduct(client, 1, "m2", waba_id=B, quantity=5)
    body = await usage(client, waba_id=B, **{"from": "2026-11-10", "to": "2026-11-10"})
    assert body["days"] == [
        {
            "date": "2026-11-10",
            "amount": 5_000,
            "messages": 5,
            "by_waba": [{"waba_id": B, "amount": 5_000, "messages": 5}],
        }
    ]
    theirs = await client.get(f"{PUBLIC}/usage", params={"waba_id": "5559999"}, headers=bearer(1))
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "unknown_waba"
    assert sum(d["amount"] for d in (await usage(client, 2))["days"]) == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-11-12", "to": "2026-11-10"}, "from"),
        ({"from": "10/11/2026"}, "from"),
        ({"to": "2026-11-10T00:00:00"}, "to"),
        ({"from": "2024-01-01", "to": "2026-11-10"}, "to"),
    ],
)
async def test_usage_refuses_a_bad_period_in_the_error_envelope(app, params: dict, field: str) -> None:
    client, _clock = app
    response = await client.get(f"{PUBLIC}/usage", params=params, headers=bearer(1))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"]["field"] == field


async def test_usage_accepts_times_and_reads_them_as_days_in_the_company_timezone(app) -> None:
    client, _clock = app
    await deduct(client, 1, "m1", waba_id=A)  # 23:30 on the 10th in Jakarta
    body = await usage(client, **{"from": "2026-11-10T16:00:00+00:00", "to": "2026-11-10T16:59:00Z"})
    assert [(d["date"], d["amount"]) for d in body["days"]] == [("2026-11-10", 1_000)]
