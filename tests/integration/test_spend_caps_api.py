"""WABA spending caps over HTTP (rule 3.11): who may set them, how deductions, refunds and batches meet them."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.api_support import INTERNAL, INTERNAL_HEADERS, PUBLIC, bearer, deduction_body, provision
from wabapool.service.reconcile import reconcile
from wabapool.storage.tables import outbox_events, waba_spend_cap_changes

DEDUCT = f"{INTERNAL}/quota-managements/deduction"
BATCH = f"{INTERNAL}/quota-managements/deductions"


async def _put_cap(http: httpx.AsyncClient, waba_id: str, cap: Any, role: str = "owner", company: int = 1) -> Any:
    # httpx sends no body for json=None: a removal is the literal JSON null.
    content = json.dumps(cap).encode()
    headers = {**bearer(company, role), "Content-Type": "application/json"}
    return await http.put(f"{PUBLIC}/wabas/{waba_id}/spend_cap", content=content, headers=headers)


async def _deduct(http: httpx.AsyncClient, code: str, *, waba_id: str = "111", quantity: int = 1, **extra: Any) -> Any:
    return await http.post(
        DEDUCT, json=deduction_body(1, code, waba_id=waba_id, quantity=quantity, **extra), headers=INTERNAL_HEADERS
    )


async def _events(http: httpx.AsyncClient, event_type: str) -> list[Any]:
    async with http.context.service.database.read() as connection:  # type: ignore[attr-defined]
        rows = await connection.execute(select(outbox_events.c.payload).where(outbox_events.c.event_type == event_type))
        return [row.payload for row in rows]


@pytest.fixture
async def capped(http: httpx.AsyncClient) -> httpx.AsyncClient:
    # Price 1,000 per message; the pool has 100,000 allowance and 50,000 postpaid.
    await provision(http, 1, wabas=("111", "112"))
    await provision(http, 2, wabas=("222",))
    return http


@pytest.mark.parametrize(
    ("role", "status"), [("owner", 200), ("admin", 200), ("supervisor", 403), ("agent", 403), ("member", 403)]
)
async def test_only_owners_and_admins_may_set_a_cap(capped: httpx.AsyncClient, role: str, status: int) -> None:
    response = await _put_cap(capped, "111", {"amount": 5_000}, role=role)
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"]["code"] == "forbidden"


async def test_another_companys_waba_is_not_found_like_a_missing_one(capped: httpx.AsyncClient) -> None:
    theirs = await _put_cap(capped, "222", {"amount": 5_000})
    missing = await _put_cap(capped, "999", {"amount": 5_000})
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"] == missing.json()["error"] | {"details": theirs.json()["error"]["details"]}


@pytest.mark.parametrize(
    "body",
    [
        {"amount": -1},
        {"amount": 1.5},
        {"amount": 10, "categories": []},
        {"amount": 10, "categories": ["spam"]},
        {"amount": 10, "categories": ["marketing", "marketing"]},
        {"amount": 10, "warn_percent": 0},
        {"amount": 10, "warn_percent": 101},
        {"amount": 2**53},
        {"amount": 10, "extra": 1},
    ],
)
async def test_a_bad_cap_is_refused_and_nothing_is_written(capped: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await _put_cap(capped, "111", body)
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("invalid_request", "validation_error", "amount_too_large")
    info = (await capped.get(f"{PUBLIC}/billings/info", headers=bearer(1))).json()
    assert info["wabas"][0]["spend_cap"] is None


async def test_a_deduction_past_the_cap_is_refused_with_the_cap_and_the_spend(capped: httpx.AsyncClient) -> None:
    assert (await _put_cap(capped, "111", {"amount": 2_500, "categories": ["marketing"]})).status_code == 200
    assert (await _deduct(capped, "m1", quantity=2, category="marketing")).status_code == 200
    refused = await _deduct(capped, "m2", category="marketing")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "waba_cap_exceeded"
    assert refused.json()["error"]["details"] == {
        "waba_id": "111",
        "cap": 2_500,
        "spent": 2_000,
        "categories": ["marketing"],
    }
    # Outside the capped categories, and on another WABA, spending goes on.
    assert (await _deduct(capped, "a1", category="authentication")).status_code == 200
    assert (await _deduct(capped, "o1", waba_id="112", quantity=5, category="marketing")).status_code == 200
    info = (await capped.get(f"{PUBLIC}/billings/info", headers=bearer(1))).json()
    first, second = info["wabas"]
    assert first["spend_cap"] == {"amount": 2_500, "categories": ["marketing"], "warn_percent": 80}
    assert first["cap_spent"] == 2_000
    assert first["spent_this_cycle"] == 3_000
    assert second["spend_cap"] is None and second["cap_spent"] is None
    assert len(await _events(capped, "waba_cap_warning")) == 1
    reached = await _events(capped, "waba_cap_reached")
    assert len(reached) == 1 and reached[0]["waba_id"] == "111" and reached[0]["spent"] == 2_000
    assert (await reconcile(capped.context.service.database)).ok  # type: ignore[attr-defined]


async def test_a_refund_lowers_the_capped_spend_and_lets_spending_resume(capped: httpx.AsyncClient) -> None:
    await _put_cap(capped, "111", {"amount": 2_000})
    await _deduct(capped, "m1", quantity=2, category="marketing")
    assert (await _deduct(capped, "m2", category="marketing")).json()["error"]["code"] == "waba_cap_exceeded"
    refund = await capped.post(
        f"{INTERNAL}/quota-managements/refund",
        json={"company_id": 1, "unique_code": "m1", "refund_code": "r1", "reason": "failed"},
        headers=INTERNAL_HEADERS,
    )
    assert refund.status_code == 200, refund.text
    info = (await capped.get(f"{PUBLIC}/billings/info", headers=bearer(1))).json()
    assert info["wabas"][0]["cap_spent"] == 0
    assert (await _deduct(capped, "m3", quantity=2, category="marketing")).status_code == 200
    # Reached once already this cycle: the next refusal raises nothing new.
    assert (await _deduct(capped, "m4", category="marketing")).status_code == 400
    assert len(await _events(capped, "waba_cap_reached")) == 1


async def test_free_messages_pass_a_full_cap(capped: httpx.AsyncClient) -> None:
    await capped.put(
        f"{INTERNAL}/price-list/wa_service_id",
        json={"unit_price": 0, "company_id": 1, "effective_from": "2025-07-01T00:00:00Z"},
        headers=INTERNAL_HEADERS,
    )
    await _put_cap(capped, "111", {"amount": 0})
    assert (await _deduct(capped, "m1")).status_code == 400
    free = await capped.post(
        DEDUCT,
        json={**deduction_body(1, "s1", waba_id="111"), "deduction_code": "wa_service_id"},
        headers=INTERNAL_HEADERS,
    )
    assert free.status_code == 200, free.text
    assert free.json()["amount"] == 0


async def test_a_batch_answers_each_item_against_the_cap(capped: httpx.AsyncClient) -> None:
    await _put_cap(capped, "111", {"amount": 3_000, "categories": ["marketing"]})
    items = [deduction_body(1, f"b{i}", waba_id="111", category="marketing") for i in range(5)]
    items.append(deduction_body(1, "b-auth", waba_id="111", category="authentication"))
    response = await capped.post(BATCH, json={"items": items}, headers=INTERNAL_HEADERS)
    assert response.status_code == 200, response.text
    statuses = [(r["status"], (r.get("error") or {}).get("code")) for r in response.json()["results"]]
    assert statuses == [("applied", None)] * 3 + [("rejected", "waba_cap_exceeded")] * 2 + [("applied", None)]
    info = (await capped.get(f"{PUBLIC}/billings/info", headers=bearer(1))).json()
    assert info["wabas"][0]["cap_spent"] == 3_000
    # Spend landing exactly on the cap is its reach; the refusals after it raise no second one.
    assert len(await _events(capped, "waba_cap_reached")) == 1


async def test_a_cap_set_mid_cycle_counts_what_was_already_spent(capped: httpx.AsyncClient) -> None:
    await _deduct(capped, "m1", quantity=3, category="marketing")
    await _deduct(capped, "u1", quantity=2, category="utility")
    answer = (await _put_cap(capped, "111", {"amount": 3_500, "categories": ["marketing"]})).json()
    assert answer == {
        "waba_id": "111",
        "spend_cap": {"amount": 3_500, "categories": ["marketing"], "warn_percent": 80},
        "cap_spent": 3_000,
    }
    changed = (await _put_cap(capped, "111", {"amount": 3_500, "categories": ["marketing", "utility"]})).json()
    assert changed["cap_spent"] == 5_000
    # Lowered under what was spent: refuses further capped spend, moves no money.
    before = (await capped.get(f"{PUBLIC}/billings/info", headers=bearer(1))).json()["balance"]
    assert (await _put_cap(capped, "111", {"amount": 1_000})).status_code == 200
    after = (await capped.get(f"{PUBLIC}/billings/info", headers=bearer(1))).json()["balance"]
    assert before == after
    assert (await _deduct(capped, "m2", category="service")).json()["error"]["code"] == "waba_cap_exceeded"


async def test_a_missing_body_removes_nothing(capped: httpx.AsyncClient) -> None:
    await _put_cap(capped, "111", {"amount": 1_000})
    response = await capped.put(f"{PUBLIC}/wabas/111/spend_cap", headers=bearer(1))
    assert response.status_code == 400
    info = (await capped.get(f"{PUBLIC}/billings/info", headers=bearer(1))).json()
    assert info["wabas"][0]["spend_cap"]["amount"] == 1_000


async def test_every_cap_change_is_audited_and_null_removes_the_cap(capped: httpx.AsyncClient) -> None:
    await _put_cap(capped, "111", {"amount": 1_000}, role="admin")
    await _put_cap(capped, "111", {"amount": 1_000}, role="admin")  # the same cap: no change, no row
    removed = await _put_cap(capped, "111", None)
    assert removed.status_code == 200, removed.text
    assert removed.json() == {"waba_id": "111", "spend_cap": None, "cap_spent": None}
    assert (await _deduct(capped, "m1", quantity=5)).status_code == 200
    async with capped.context.service.database.read() as connection:  # type: ignore[attr-defined]
        rows = (
            (await connection.execute(select(waba_spend_cap_changes).order_by(waba_spend_cap_changes.c.changed_at)))
            .mappings()
            .all()
        )
    assert [(r["old_cap"], r["new_cap"]) for r in rows] == [
        (None, {"amount": 1_000, "categories": None, "warn_percent": 80}),
        ({"amount": 1_000, "categories": None, "warn_percent": 80}, None),
    ]
    assert rows[0]["changed_by"].startswith("user:") and "(admin)" in rows[0]["changed_by"]


async def test_provisioning_sets_keeps_and_removes_the_cap(capped: httpx.AsyncClient) -> None:
    url = f"{INTERNAL}/companies/1/wabas/111"
    cap = {"amount": 7_000, "categories": ["marketing"], "warn_percent": 50}
    set_answer = await capped.put(url, json={"name": "Sales", "spend_cap": cap}, headers=INTERNAL_HEADERS)
    assert set_answer.status_code == 200, set_answer.text
    assert set_answer.json()["spend_cap"] == cap
    kept = await capped.put(url, json={"name": "Sales 2"}, headers=INTERNAL_HEADERS)
    assert kept.json()["spend_cap"] == cap
    removed = await capped.put(url, json={"name": "Sales 2", "spend_cap": None}, headers=INTERNAL_HEADERS)
    assert removed.json()["spend_cap"] is None
    # A new WABA may come with its cap in the same call.
    new = await capped.put(
        f"{INTERNAL}/companies/1/wabas/113", json={"name": "New", "spend_cap": {"amount": 1}}, headers=INTERNAL_HEADERS
    )
    assert new.json()["spend_cap"] == {"amount": 1, "categories": None, "warn_percent": 80}


@pytest.mark.parametrize(
    ("role", "sees"), [("owner", True), ("admin", True), ("supervisor", True), ("agent", False), ("member", False)]
)
async def test_only_owners_admins_and_supervisors_see_caps_in_billing_info(
    capped: httpx.AsyncClient, role: str, sees: bool
) -> None:
    await _put_cap(capped, "111", {"amount": 5_000})
    waba = (await capped.get(f"{PUBLIC}/billings/info", headers=bearer(1, role))).json()["wabas"][0]
    assert ("spend_cap" in waba) is sees
    assert ("cap_spent" in waba) is sees
    if sees:
        assert waba["spend_cap"]["amount"] == 5_000
