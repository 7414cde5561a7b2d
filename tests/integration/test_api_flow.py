from __future__ import annotations

from collections.abc import AsyncIterator

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
from wabapool.storage.database import Database


@pytest.fixture
async def client(database: Database) -> AsyncIterator[httpx.AsyncClient]:
    url = database.url.replace("+aiosqlite", "").replace("+asyncpg", "")
    async with api_client(settings_for(url)) as (http, _):
        yield http


async def test_deduction_over_http_returns_allocations_and_replays(client: httpx.AsyncClient) -> None:
    await provision(client, 7, allowance=1_500, postpaid_limit=1_000)
    body = deduction_body(7, "wamid.1", quantity=2, phone_number="+6281234567890", customer_name="Budi Santoso")
    first = await client.post(f"{INTERNAL}/quota-managements/deduction", json=body, headers=INTERNAL_HEADERS)
    assert first.status_code == 200, first.text
    data = first.json()
    assert data["amount"] == 2_000 and data["value_before"] == 1_500 and data["value_after"] == -500
    assert data["credited_to"] == "wa_balance_initial"
    assert data["allocations"] == [
        {"credited_to": "wa_balance_initial", "quota_type": "initial", "amount": 1_500},
        {"credited_to": "wa_balance_postpaid", "quota_type": "postpaid", "amount": 500},
    ]
    assert data["replayed"] is False
    again = await client.post(f"{INTERNAL}/quota-managements/deduction", json=body, headers=INTERNAL_HEADERS)
    assert again.json() == {**data, "replayed": True}
    assert "x-request-id" in again.headers


async def test_billing_info_shows_each_change_at_once(client: httpx.AsyncClient) -> None:
    await provision(client, 8, allowance=10_000)
    owner = bearer(8)
    info = (await client.get(f"{PUBLIC}/billings/info", headers=owner)).json()
    assert info["balance"]["total"] == 10_000 and info["stale"] is False
    await client.post(f"{INTERNAL}/quota-managements/deduction", json=deduction_body(8, "m1"), headers=INTERNAL_HEADERS)
    assert (await client.get(f"{PUBLIC}/billings/info", headers=owner)).json()["balance"]["total"] == 9_000
    await client.post(
        f"{INTERNAL}/quota-managements/top-up",
        json={"company_id": 8, "amount": 5_000, "payment_reference": "pay-1"},
        headers=INTERNAL_HEADERS,
    )
    assert (await client.get(f"{PUBLIC}/billings/info", headers=owner)).json()["balance"]["total"] == 14_000
    await client.post(
        f"{INTERNAL}/quota-managements/refund",
        json={"company_id": 8, "unique_code": "m1", "refund_code": "r1"},
        headers=INTERNAL_HEADERS,
    )
    info = (await client.get(f"{PUBLIC}/billings/info", headers=owner)).json()
    assert info["balance"]["total"] == 15_000
    assert info["wabas"] == [
        {
            "waba_id": "1001001",
            "name": "WABA 1",
            "spent_this_cycle": 0,
            "daily_spend": 0,
            "spend_cap": None,
            "cap_spent": None,
        }
    ]


async def test_logs_and_csv_follow_the_show_waba_id_preference(client: httpx.AsyncClient) -> None:
    await provision(client, 9)
    for index in range(3):
        body = deduction_body(
            9, f"m{index}", broadcast_id="bc-1", phone_number="+6281234567890", customer_name="Budi Santoso"
        )
        await client.post(f"{INTERNAL}/quota-managements/deduction", json=body, headers=INTERNAL_HEADERS)
    owner = bearer(9)
    page = (await client.get(f"{PUBLIC}/mcc_logs", params={"limit": 2}, headers=owner)).json()
    assert [row["unique_code"] for row in page["data"]] == ["m2", "m1"]
    assert "waba_id" not in page["data"][0]
    rest = (await client.get(f"{PUBLIC}/mcc_logs", params={"cursor": page["next_cursor"]}, headers=owner)).json()
    assert [row["unique_code"] for row in rest["data"]] == ["m0"] and rest["next_cursor"] is None
    csv_text = (
        await client.get(f"{PUBLIC}/download_broadcast_deduction", params={"broadcast_id": "bc-1"}, headers=owner)
    ).text
    assert "WABA ID" not in csv_text.splitlines()[0]
    put = await client.put(f"{PUBLIC}/billing_preferences", json={"show_waba_id": True}, headers=owner)
    assert put.json() == {"show_waba_id": True}
    page = (await client.get(f"{PUBLIC}/mcc_logs", headers=owner)).json()
    assert page["data"][0]["waba_id"] == "1001001"
    assert page["data"][0]["phone_number"] == "+6281234567890"
    lines = (
        await client.get(f"{PUBLIC}/download_broadcast_deduction", params={"broadcast_id": "bc-1"}, headers=owner)
    ).text.splitlines()
    assert lines[0].split(",")[2] == "WABA ID" and len(lines) == 4 and ",10.00," in lines[1]
    supervisor = (await client.get(f"{PUBLIC}/mcc_logs", headers=bearer(9, "supervisor"))).json()
    assert supervisor["data"][0]["phone_number"] != "+6281234567890"
    assert supervisor["data"][0]["customer_name"] != "Budi Santoso"
