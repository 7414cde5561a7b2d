"""Issue 9's sequences through the HTTP API: no provisioning or payment call creates or loses money."""

from __future__ import annotations

import asyncio
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
from tests.conftest import truncate_all
from wabapool.service.reconcile import reconcile
from wabapool.storage.database import Database

CEILING = 2**53 - 1
COMPANY = 9


async def put_company(http: httpx.AsyncClient, body: dict[str, Any], company_id: int = COMPANY) -> httpx.Response:
    return await http.put(f"{INTERNAL}/companies/{company_id}", json=body, headers=INTERNAL_HEADERS)


async def post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await http.post(f"{INTERNAL}/quota-managements/{path}", json=body, headers=INTERNAL_HEADERS)


async def balance(http: httpx.AsyncClient, company_id: int = COMPANY) -> dict[str, Any]:
    response = await http.get(f"{PUBLIC}/billings/info", headers=bearer(company_id))
    assert response.status_code == 200, response.text
    return response.json()["balance"]  # type: ignore[no-any-return]


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]  # type: ignore[no-any-return]


async def test_an_allowance_spent_then_cut_and_restored_cannot_be_spent_twice_in_one_cycle(
    http: httpx.AsyncClient,
) -> None:
    await provision(http, COMPANY, allowance=10_000, postpaid_limit=0, unit_price=1_000)
    for index in range(10):
        assert (await post(http, "deduction", deduction_body(COMPANY, f"m{index}"))).status_code == 200
    assert (await balance(http))["wabi"]["remaining"] == 0
    assert (await put_company(http, {"package": {"allowance": 0}})).status_code == 200
    assert (await put_company(http, {"package": {"allowance": 10_000}})).status_code == 200
    assert (await balance(http))["wabi"]["remaining"] == 0
    refused = await post(http, "deduction", deduction_body(COMPANY, "m-again"))
    assert refused.status_code == 400 and error_code(refused) == "quota_exceeded"


async def test_a_new_timezone_waits_for_the_cycle_end_and_refills_nothing(http: httpx.AsyncClient) -> None:
    await provision(http, COMPANY, allowance=10_000, postpaid_limit=0, unit_price=1_000)
    assert (await post(http, "deduction", deduction_body(COMPANY, "m1", quantity=4))).status_code == 200
    before = (await http.get(f"{PUBLIC}/billings/info", headers=bearer(COMPANY))).json()
    assert (await put_company(http, {"timezone": "America/New_York"})).status_code == 200
    after = (await http.get(f"{PUBLIC}/billings/info", headers=bearer(COMPANY))).json()
    assert after["balance"]["wabi"]["remaining"] == 6_000
    assert after["cycle"] == before["cycle"]


async def test_a_package_only_update_keeps_the_currency_and_timezone_it_was_not_told(http: httpx.AsyncClient) -> None:
    created = await put_company(
        http, {"currency": "USD", "timezone": "UTC", "package": {"allowance": 4_500, "postpaid_limit": 0}}
    )
    assert created.status_code == 200, created.text
    updated = await put_company(http, {"package": {"postpaid_limit": 100}})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["currency"], updated.json()["timezone"]) == ("USD", "UTC")
    assert updated.json()["package"]["allowance"] == 4_500
    info = (await http.get(f"{PUBLIC}/billings/info", headers=bearer(COMPANY))).json()
    assert info["currency"] == "USD" and info["balance"]["total"] == 4_500


async def test_the_currency_of_a_company_with_ledger_entries_is_locked(http: httpx.AsyncClient) -> None:
    await provision(http, COMPANY, allowance=100, postpaid_limit=0)
    locked = await put_company(http, {"currency": "USD"})
    assert locked.status_code == 409 and error_code(locked) == "currency_locked"
    assert (await http.get(f"{PUBLIC}/billings/info", headers=bearer(COMPANY))).json()["currency"] == "IDR"


async def test_a_v3_company_cannot_be_reprovisioned_as_v2(http: httpx.AsyncClient) -> None:
    await provision(http, COMPANY, allowance=100, postpaid_limit=0, unit_price=10)
    locked = await put_company(http, {"billing_version": "v2"})
    assert locked.status_code == 409 and error_code(locked) == "billing_version_locked"
    assert (await post(http, "deduction", deduction_body(COMPANY, "m1"))).status_code == 200
    assert (await balance(http))["total"] == 90


async def test_one_payment_reference_is_one_payment_across_top_up_and_settlement(http: httpx.AsyncClient) -> None:
    await provision(http, COMPANY, allowance=0, postpaid_limit=5_000, unit_price=1_000)
    assert (await post(http, "deduction", deduction_body(COMPANY, "m1", quantity=2))).status_code == 200
    paid = {"company_id": COMPANY, "amount": 2_000, "payment_reference": "pay-1"}
    assert (await post(http, "top-up", paid)).status_code == 200
    again = await post(http, "settle-postpaid", paid)
    assert again.status_code == 409 and error_code(again) == "idempotency_conflict"
    replay = await post(http, "top-up", paid)
    assert replay.status_code == 200 and replay.json()["replayed"] is True
    assert (await balance(http))["total"] == 0


async def test_a_settlement_larger_than_postpaid_used_is_refused_and_writes_nothing(http: httpx.AsyncClient) -> None:
    await provision(http, COMPANY, allowance=0, postpaid_limit=5_000, unit_price=1_000)
    nothing_used = await post(http, "settle-postpaid", {"company_id": COMPANY, "amount": 1, "payment_reference": "s0"})
    assert nothing_used.status_code == 400 and error_code(nothing_used) == "settlement_exceeds_used"
    assert (await post(http, "deduction", deduction_body(COMPANY, "m1", quantity=3))).status_code == 200
    over = await post(http, "settle-postpaid", {"company_id": COMPANY, "amount": 3_001, "payment_reference": "s1"})
    assert over.status_code == 400 and error_code(over) == "settlement_exceeds_used"
    figures = await balance(http)
    assert figures["postpaid"]["used"] == 3_000 and figures["additional"]["remaining"] == 0
    exact = await post(http, "settle-postpaid", {"company_id": COMPANY, "amount": 3_000, "payment_reference": "s1"})
    assert exact.status_code == 200
    assert (await balance(http))["total"] == 0


async def test_a_refund_replayed_with_another_reason_is_a_conflict(http: httpx.AsyncClient) -> None:
    await provision(http, COMPANY, allowance=10_000, postpaid_limit=0)
    assert (await post(http, "deduction", deduction_body(COMPANY, "m1"))).status_code == 200
    refund = {"company_id": COMPANY, "unique_code": "m1", "refund_code": "r1", "reason": "not delivered"}
    assert (await post(http, "refund", refund)).status_code == 200
    assert (await post(http, "refund", refund)).json()["replayed"] is True
    other = await post(http, "refund", {**refund, "reason": "failed"})
    assert other.status_code == 409 and error_code(other) == "idempotency_conflict"


async def test_a_top_up_past_the_ceiling_on_money_is_amount_too_large_not_a_500(http: httpx.AsyncClient) -> None:
    await provision(http, COMPANY, allowance=0, postpaid_limit=0)
    too_large = await post(http, "top-up", {"company_id": COMPANY, "amount": CEILING + 1, "payment_reference": "p0"})
    assert too_large.status_code == 400 and error_code(too_large) == "amount_too_large"
    assert (
        await post(http, "top-up", {"company_id": COMPANY, "amount": CEILING, "payment_reference": "p1"})
    ).is_success
    one_more = await post(http, "top-up", {"company_id": COMPANY, "amount": 1, "payment_reference": "p2"})
    assert one_more.status_code == 400 and error_code(one_more) == "amount_too_large"
    assert (await balance(http))["total"] == CEILING


async def test_a_waba_of_another_company_is_refused_as_owned_elsewhere(http: httpx.AsyncClient) -> None:
    await provision(http, COMPANY, wabas=("5550001",))
    await put_company(http, {"package": {"allowance": 0}}, company_id=COMPANY + 1)
    taken = await http.put(
        f"{INTERNAL}/companies/{COMPANY + 1}/wabas/5550001", json={"name": "mine"}, headers=INTERNAL_HEADERS
    )
    assert taken.status_code == 409 and error_code(taken) == "waba_owned_elsewhere"


@pytest.mark.postgres
async def test_concurrent_top_ups_near_the_ceiling_answer_4xx_or_200_never_5xx_and_reconcile(
    postgres_url: str,
) -> None:
    database = Database(postgres_url)
    await truncate_all(database)
    await database.dispose()
    async with api_client(settings_for(postgres_url)) as (http, context):
        await provision(http, COMPANY, allowance=0, postpaid_limit=0)
        amount = 10**15

        async def top_up(index: int) -> int:
            body = {"company_id": COMPANY, "amount": amount, "payment_reference": f"p{index}"}
            return (await post(http, "top-up", body)).status_code

        statuses: list[int] = []
        for wave in range(4):  # 48 top-ups, 12 at a time: each wave contends for the one pool
            statuses += await asyncio.gather(*(top_up(wave * 100 + index) for index in range(12)))
        assert set(statuses) <= {200, 400}, statuses
        assert statuses.count(200) == CEILING // amount  # as many as fit under the ceiling, then refusals
        assert (await balance(http))["total"] == amount * statuses.count(200)
        report = await reconcile(context.service.database)
        assert report.ok, report.violations


async def test_a_market_price_is_charged_end_to_end_by_the_phone_numbers_calling_code(http: httpx.AsyncClient) -> None:
    await provision(http, COMPANY, allowance=100_000, postpaid_limit=0, unit_price=1_000)
    indonesia = {"unit_price": 400, "company_id": COMPANY, "market": "62", "effective_from": "2025-07-01T00:00:00Z"}
    assert (
        await http.put(f"{INTERNAL}/price-list/wa_marketing_id", json=indonesia, headers=INTERNAL_HEADERS)
    ).status_code == 200
    local = await post(http, "deduction", deduction_body(COMPANY, "m-id", phone_number="+62 812-3456-7890"))
    abroad = await post(http, "deduction", deduction_body(COMPANY, "m-us", phone_number="+1 415 555 0100"))
    assert (local.status_code, local.json()["amount"]) == (200, 400)
    assert (abroad.status_code, abroad.json()["amount"]) == (200, 1_000)
    assert (await balance(http))["total"] == 100_000 - 1_400
