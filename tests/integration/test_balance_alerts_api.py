"""Balance alerts, auto-recharge and the forecast over the real API, on SQLite and on PostgreSQL.

Each test drives the app with an injected clock; the outcomes are checked
against what the rules say by hand (the model of `tests/unit/test_balance_alerts`
covers the rule space; here: the wiring, the transaction, the events).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.api_support import (
    INTERNAL,
    INTERNAL_HEADERS,
    PUBLIC,
    api_client,
    bearer,
    deduction_body,
    provision,
    settings_for,
)
from tests.conftest import FakeClock, truncate_all
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade

# 10:00 on 10 Nov 2026 in Jakarta: mid-cycle (the cycle runs 1 Nov .. 1 Dec, Jakarta).
START = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def app(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[tuple[httpx.AsyncClient, Any, FakeClock]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'alerts.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("postgres_url")
        database = Database(url)
        await truncate_all(database)
        await database.dispose()
    clock = FakeClock(START)
    async with api_client(settings_for(url), clock=clock) as (client, context):
        yield client, context, clock


async def deduct(client: httpx.AsyncClient, company_id: int, code: str, quantity: int = 1) -> httpx.Response:
    response = await client.post(
        f"{INTERNAL}/quota-managements/deduction",
        json=deduction_body(company_id, code, quantity=quantity),
        headers=INTERNAL_HEADERS,
    )
    assert response.status_code == 200, response.text
    return response


async def top_up(client: httpx.AsyncClient, company_id: int, amount: int, reference: str) -> dict[str, Any]:
    response = await client.post(
        f"{INTERNAL}/quota-managements/top-up",
        json={"company_id": company_id, "amount": amount, "payment_reference": reference},
        headers=INTERNAL_HEADERS,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def event_list(client: httpx.AsyncClient, company_id: int, *types: str) -> list[dict[str, Any]]:
    response = await client.get(f"{PUBLIC}/billing_events", params={"limit": "200"}, headers=bearer(company_id))
    assert response.status_code == 200, response.text
    return [row for row in reversed(response.json()["data"]) if not types or row["type"] in types]


async def info(client: httpx.AsyncClient, company_id: int, role: str = "owner") -> dict[str, Any]:
    response = await client.get(f"{PUBLIC}/billings/info", headers=bearer(company_id, role))
    assert response.status_code == 200, response.text
    return response.json()


async def test_owner_sets_alerts_and_auto_recharge_and_a_supervisor_reads_them(app) -> None:
    client, _, _ = app
    await provision(client, 1)
    body = {
        "alerts": [{"kind": "percent", "value": 50}, {"kind": "amount", "value": 20_000}],
        "auto_recharge": {"below": 10_000, "amount": 500_000},
    }
    response = await client.put(f"{PUBLIC}/balance_alerts", json=body, headers=bearer(1, "admin"))
    assert response.status_code == 200, response.text
    expected = {**body, "auto_recharge": {**body["auto_recharge"], "max_per_cycle": 3}, "forecast_warning_days": 3}
    assert response.json() == {**expected, "editable": True}
    read = await client.get(f"{PUBLIC}/balance_alerts", headers=bearer(1, "supervisor"))
    assert read.status_code == 200 and read.json() == {**expected, "editable": False}
    refused = await client.put(f"{PUBLIC}/balance_alerts", json={"alerts": []}, headers=bearer(1, "supervisor"))
    assert refused.status_code == 403
    for role in ("agent", "member"):
        assert (await client.get(f"{PUBLIC}/balance_alerts", headers=bearer(1, role))).status_code == 403
    # A field left out keeps its value; auto_recharge null turns it off.
    off = await client.put(f"{PUBLIC}/balance_alerts", json={"auto_recharge": None}, headers=bearer(1))
    assert off.json()["alerts"] == body["alerts"] and off.json()["auto_recharge"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"alerts": [{"kind": "percent", "value": 120}]}, "alerts[0].value"),
        ({"alerts": [{"kind": "amount", "value": 5}, {"kind": "amount", "value": 5}]}, "alerts[1]"),
        ({"auto_recharge": {"below": 10, "amount": 9_007_199_254_740_992}}, "auto_recharge.amount"),
        ({"auto_recharge": {"below": 10, "amount": 10, "max_per_cycle": 0}}, "auto_recharge.max_per_cycle"),
    ],
)
async def test_a_bad_setting_is_refused_in_the_envelope_and_nothing_is_written(app, body, field) -> None:
    client, _, _ = app
    await provision(client, 1)
    good = {"alerts": [{"kind": "percent", "value": 30}]}
    await client.put(f"{PUBLIC}/balance_alerts", json=good, headers=bearer(1))
    response = await client.put(
        f"{PUBLIC}/balance_alerts", json={**body, "forecast_warning_days": 5}, headers=bearer(1)
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert response.json()["error"]["details"]["field"] == field
    after = (await client.get(f"{PUBLIC}/balance_alerts", headers=bearer(1))).json()
    assert after == {**good, "auto_recharge": None, "forecast_warning_days": 3, "editable": True}


async def test_six_alerts_are_refused(app) -> None:
    client, _, _ = app
    await provision(client, 1)
    body = {"alerts": [{"kind": "amount", "value": v} for v in range(1, 7)]}
    response = await client.put(f"{PUBLIC}/balance_alerts", json=body, headers=bearer(1))
    assert response.status_code in (400, 422)
    assert "error" in response.json()


async def test_provisioning_sets_and_keeps_the_settings(app) -> None:
    client, _, _ = app
    await provision(client, 2)
    settings = {
        "balance_alerts": [{"kind": "amount", "value": 30_000}],
        "auto_recharge": {"below": 5_000, "amount": 100_000, "max_per_cycle": 2},
        "forecast_warning_days": 5,
    }
    response = await client.put(f"{INTERNAL}/companies/2", json=settings, headers=INTERNAL_HEADERS)
    assert response.status_code == 200, response.text
    assert {key: response.json()[key] for key in settings} == settings
    kept = await client.put(f"{INTERNAL}/companies/2", json={"timezone": "Asia/Jakarta"}, headers=INTERNAL_HEADERS)
    assert {key: kept.json()[key] for key in settings} == settings
    public = (await client.get(f"{PUBLIC}/balance_alerts", headers=bearer(2))).json()
    assert public["alerts"] == settings["balance_alerts"] and public["forecast_warning_days"] == 5


async def test_an_alert_fires_once_per_crossing_and_a_top_up_above_it_rearms_it(app) -> None:
    client, _, _ = app
    await provision(client, 3, allowance=100_000, postpaid_limit=0, unit_price=10_000)
    alerts = {"alerts": [{"kind": "percent", "value": 70}]}
    await client.put(f"{PUBLIC}/balance_alerts", json=alerts, headers=bearer(3))
    for index in range(3):  # 90,000 .. 70,000 left: the third crossing reaches 70 %
        await deduct(client, 3, f"a{index}")
    await deduct(client, 3, "a3")  # 60,000: still under, no second alert
    fired = await event_list(client, 3, "balance_alert")
    assert len(fired) == 1
    assert fired[0]["data"]["alert"] == {"kind": "percent", "value": 70}
    assert fired[0]["data"]["total"] == 70_000
    await top_up(client, 3, 100_000, "pay-1")  # 160,000 of 200,000: above 70 %
    for index in range(6):  # 100,000 left of 200,000: under 70 % (140,000) again
        await deduct(client, 3, f"b{index}")
    assert len(await event_list(client, 3, "balance_alert")) == 2


async def test_auto_recharge_requests_once_the_top_up_with_its_reference_closes_it_and_max_per_cycle_holds(
    app,
) -> None:
    client, _, _ = app
    await provision(client, 4, allowance=50_000, postpaid_limit=0, unit_price=10_000)
    setting = {"auto_recharge": {"below": 25_000, "amount": 30_000, "max_per_cycle": 2}}
    await client.put(f"{PUBLIC}/balance_alerts", json=setting, headers=bearer(4))
    await deduct(client, 4, "d1")  # 40,000
    await deduct(client, 4, "d2")  # 30,000
    assert await event_list(client, 4, "top_up_requested") == []
    await deduct(client, 4, "d3")  # 20,000 < 25,000: request
    await deduct(client, 4, "d4")  # 10,000: one is open, none more
    requested = await event_list(client, 4, "top_up_requested")
    assert len(requested) == 1
    data = requested[0]["data"]
    assert (data["amount"], data["currency"], data["available"]) == (30_000, "IDR", 20_000)
    shown = (await info(client, 4, "supervisor"))["top_up_request"]
    assert shown["payment_reference"] == data["payment_reference"] and shown["amount"] == 30_000
    await top_up(client, 4, 30_000, data["payment_reference"])  # 40,000
    assert (await info(client, 4))["top_up_request"] is None
    replayed = await top_up(client, 4, 30_000, data["payment_reference"])  # idempotent as every top-up
    assert replayed["value_after"] == 40_000
    await deduct(client, 4, "d5")  # 30,000
    await deduct(client, 4, "d6")  # 20,000: the second request
    second = await event_list(client, 4, "top_up_requested")
    assert len(second) == 2
    await top_up(client, 4, 30_000, second[1]["data"]["payment_reference"])  # 50,000
    for index in range(4):  # down to 10,000: the cycle's two requests are used
        await deduct(client, 4, f"e{index}")
    assert len(await event_list(client, 4, "top_up_requested")) == 2


async def test_an_open_request_expires_after_24_hours_by_the_worker_and_the_next_deduction_raises_a_new_one(
    app,
) -> None:
    client, context, clock = app
    await provision(client, 5, allowance=50_000, postpaid_limit=0, unit_price=10_000)
    await client.put(
        f"{PUBLIC}/balance_alerts", json={"auto_recharge": {"below": 25_000, "amount": 30_000}}, headers=bearer(5)
    )
    for code in ("d1", "d2", "d3"):
        await deduct(client, 5, code)
    clock.advance(hours=23)
    assert await context.service.expire_top_up_requests() == 0
    clock.advance(hours=1)
    assert await context.service.expire_top_up_requests() == 1
    assert await context.service.expire_top_up_requests() == 0  # once
    assert len(await event_list(client, 5, "top_up_request_expired")) == 1
    assert (await info(client, 5))["top_up_request"] is None
    await deduct(client, 5, "d4")
    requested = await event_list(client, 5, "top_up_requested")
    assert len(requested) == 2
    assert requested[0]["data"]["payment_reference"] != requested[1]["data"]["payment_reference"]


async def test_billings_info_forecasts_from_the_roll_up_and_the_worker_warns_once_per_cycle(app) -> None:
    client, context, clock = app
    await provision(client, 6, wabas=("6001", "6002"), allowance=100_000, postpaid_limit=0, unit_price=1_000)
    # Three days of spend: 10,000 a day from 6001 and 2,000 from 6002.
    for day in range(3):
        for n in range(10):
            await deduct_from(client, 6, f"x{day}-{n}", "6001")
        for n in range(2):
            await deduct_from(client, 6, f"y{day}-{n}", "6002")
        clock.advance(days=1)
    await top_up(client, 6, 1, "fresh-figures")  # a change: the cached figures are as of now
    body = await info(client, 6)
    # The company was created on 10 Nov: the basis is 10..12 Nov, 36,000 over 3 days.
    assert body["forecast"]["basis_days"] == 3 and body["forecast"]["daily_spend"] == 12_000
    assert {w["waba_id"]: w["daily_spend"] for w in body["wabas"]} == {"6001": 10_000, "6002": 2_000}
    available = body["balance"]["available"]
    assert available == 100_000 - 36_000 + 1
    as_of = datetime.fromisoformat(body["as_of"])
    runs_out = datetime.fromisoformat(body["forecast"]["runs_out_at"])
    assert int((runs_out - as_of).total_seconds()) == available * 3 * 86_400 // 36_000  # 5.33 days
    # 13 Nov + 5.3 days is 18 Nov, 13 days before the cycle ends: the worker warns, once.
    assert await context.service.warn_forecast_low() == 1
    await context.service.warn_forecast_low()
    warned = await event_list(client, 6, "balance_forecast_low")
    assert len(warned) == 1 and warned[0]["data"]["daily_spend"] == 12_000


async def test_a_company_with_no_spend_has_no_forecast(app) -> None:
    client, context, _ = app
    await provision(client, 7)
    body = await info(client, 7)
    assert body["forecast"] == {"runs_out_at": None, "daily_spend": 0, "basis_days": 0}
    assert body["top_up_request"] is None
    assert await context.service.warn_forecast_low() == 0


async def deduct_from(client: httpx.AsyncClient, company_id: int, code: str, waba_id: str) -> None:
    response = await client.post(
        f"{INTERNAL}/quota-managements/deduction",
        json=deduction_body(company_id, code, waba_id=waba_id),
        headers=INTERNAL_HEADERS,
    )
    assert response.status_code == 200, response.text
