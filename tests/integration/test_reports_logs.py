"""GET /mcc_logs: exact-match filters, refunds as rows of their own, and pages that neither skip nor leak."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.api_support import PUBLIC, bearer
from tests.conftest import FakeClock
from tests.reports_support import database_url, deduct, provision, refund, report_app

A, B = "8880001", "8880002"
THEIRS = "8889999"
PHONE = "+6281234567890"


@pytest.fixture(params=["sqlite", "postgres"])
async def app(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[tuple[httpx.AsyncClient, FakeClock]]:
    postgres = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    clock = FakeClock(datetime(2026, 11, 10, 16, 30, tzinfo=UTC))  # 23:30 in Jakarta
    async with report_app(database_url(request.param, tmp_path, postgres), clock) as (client, context):
        client.context = context  # type: ignore[attr-defined]
        await provision(client, 1, wabas=(A, B))
        await provision(client, 2, wabas=(THEIRS,))
        for company_id in (1, 2):
            await client.put(f"{PUBLIC}/billing_preferences", json={"show_waba_id": True}, headers=bearer(company_id))
        yield client, clock


async def logs(client: httpx.AsyncClient, company_id: int = 1, role: str = "owner", **params: str) -> httpx.Response:
    return await client.get(f"{PUBLIC}/mcc_logs", params=params, headers=bearer(company_id, role))


async def codes(client: httpx.AsyncClient, company_id: int = 1, **params: str) -> list[str]:
    response = await logs(client, company_id, **params)
    assert response.status_code == 200, response.text
    return [row["unique_code"] for row in response.json()["data"]]


async def every_page(client: httpx.AsyncClient, limit: int, between=None, **params: str) -> list[tuple[str, str]]:
    seen, cursor, page_number = [], None, 0
    while True:
        page_params = {"limit": str(limit), **params, **({"cursor": cursor} if cursor else {})}
        response = await logs(client, **page_params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [(row["kind"], row["unique_code"]) for row in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
        page_number += 1
        if between is not None:
            await between(page_number)


async def test_the_phone_filter_matches_the_number_however_it_is_written(app) -> None:
    client, _clock = app
    await deduct(client, 1, "mine", waba_id=A, phone_number=PHONE)
    await deduct(client, 1, "spaced", waba_id=A, phone_number="+62 812-3456-7890")
    await deduct(client, 1, "other", waba_id=A, phone_number="+6281234567891")
    await deduct(client, 1, "none", waba_id=A)
    for written in (PHONE, "+62 812 3456 7890", "6281234567890", "006281234567890", "(62) 812.3456.7890"):
        assert await codes(client, phone_number=written) == ["spaced", "mine"], written
    assert await codes(client, phone_number="+6281234567899") == []
    response = await logs(client, phone_number="no digits")
    assert response.status_code == 400 and response.json()["error"]["details"] == {"field": "phone_number"}


async def test_broadcast_category_waba_and_days_in_the_company_timezone_narrow_exactly(app) -> None:
    client, clock = app
    await deduct(client, 1, "b1-mkt", waba_id=A, broadcast_id="b1", category="marketing")
    await deduct(client, 1, "b1-utl", waba_id=B, broadcast_id="b1", category="utility")
    await deduct(client, 1, "b10", waba_id=A, broadcast_id="b10", category="marketing")
    clock.advance(hours=1)  # the 11th in Jakarta, still the 10th in UTC
    await deduct(client, 1, "late", waba_id=B, broadcast_id="b1", category="marketing")
    assert await codes(client, broadcast_id="b1") == ["late", "b1-utl", "b1-mkt"]
    assert await codes(client, category="marketing", broadcast_id="b1") == ["late", "b1-mkt"]
    assert await codes(client, waba_id=B) == ["late", "b1-utl"]
    assert await codes(client, **{"from": "2026-11-10", "to": "2026-11-10"}) == ["b10", "b1-utl", "b1-mkt"]
    assert await codes(client, **{"from": "2026-11-11"}) == ["late"]
    assert await codes(client, **{"from": "2026-11-10T17:00:00+00:00"}) == ["late"]
    assert await codes(client, category="market") == []


async def test_a_refund_is_its_own_row_linked_to_the_deduction_it_returns(app) -> None:
    client, clock = app
    taken = await deduct(client, 1, "m1", waba_id=A, quantity=2, broadcast_id="b1")
    clock.advance(minutes=5)
    given = await refund(client, 1, "m1", "r1")
    rows = (await logs(client)).json()["data"]
    assert [(r["kind"], r["unique_code"]) for r in rows] == [("refund", "m1"), ("deduction", "m1")]
    back, original = rows
    assert original["deduction_id"] == back["deduction_id"] == taken["deduction_id"]
    assert back["refund_id"] == given["refund_id"] and original["refund_id"] is None
    assert original["amount"] == 2_000 and back["amount"] == -2_000
    assert original["refunded"] is True and back["refunded"] is True
    assert back["balance_after"] == given["value_after"] and original["balance_after"] == taken["value_after"]
    assert back["credited_to"] == "wa_balance_initial" and back["waba_id"] == A
    assert back["created_at"] > original["created_at"]
    # The refund row follows the deduction's filters.
    assert [r["kind"] for r in (await logs(client, broadcast_id="b1")).json()["data"]] == ["refund", "deduction"]
    assert (await logs(client, waba_id=B)).json()["data"] == []


@pytest.mark.parametrize("advance", [True, False], ids=["clock moves", "same instant"])
async def test_every_row_comes_exactly_once_across_pages_while_deductions_arrive(app, advance: bool) -> None:
    client, clock = app
    for index in range(10):
        await deduct(client, 1, f"old-{index}", waba_id=A if index % 2 else B)
        if index == 4:
            await refund(client, 1, "old-1", "r-old-1")
        if advance:
            clock.advance(seconds=1)

    async def more(page_number: int) -> None:
        if advance:
            clock.advance(seconds=1)
        await deduct(client, 1, f"new-{page_number}", waba_id=A)
        await deduct(client, 2, f"theirs-{page_number}", waba_id=THEIRS)

    seen = await every_page(client, 3, between=more)
    expected = {("deduction", f"old-{i}") for i in range(10)} | {("refund", "old-1")}
    assert len(seen) == len(set(seen)) == len(expected)
    assert set(seen) == expected
    only_a = await every_page(client, 2, waba_id=A, between=more)
    assert len(only_a) == len(set(only_a))
    assert {code for _, code in only_a} >= {f"old-{i}" for i in range(1, 10, 2)}


async def test_no_filter_or_cursor_shows_another_companys_rows(app) -> None:
    client, _clock = app
    for company_id, waba in ((1, A), (2, THEIRS)):
        for index in range(4):
            await deduct(
                client,
                company_id,
                f"c{company_id}-{index}",
                waba_id=waba,
                broadcast_id="shared",
                category="marketing",
                phone_number=PHONE,
            )
    for params in ({}, {"broadcast_id": "shared"}, {"phone_number": PHONE}, {"category": "marketing"}, {"limit": "1"}):
        assert all(code.startswith("c1-") for code in await codes(client, **params)), params
    assert (await logs(client, waba_id=THEIRS)).status_code == 404
    theirs = (await logs(client, 2, limit="1")).json()["next_cursor"]
    mine = (await logs(client, limit="1")).json()["next_cursor"]
    body, _, tag = mine.partition(".")
    forged = [theirs, body + "." + tag[:-3] + "AAA", "eyJ9." + tag, "not-a-cursor", ".", "A" * 200]
    for cursor in forged:
        response = await logs(client, cursor=cursor)
        assert response.status_code == 400, (cursor, response.text)
        assert response.json()["error"] == {
            "code": "invalid_request",
            "message": "cursor is not one this API returned",
            "details": {"field": "cursor"},
        }


async def test_a_supervisor_sees_personal_data_masked_and_an_agent_nothing(app) -> None:
    client, _clock = app
    await deduct(client, 1, "m1", waba_id=A, phone_number=PHONE, customer_name="A")
    row = (await logs(client, role="supervisor")).json()["data"][0]
    assert row["customer_name"] == "*" and row["phone_number"] == "+62812****7890"
    owner_row = (await logs(client)).json()["data"][0]
    assert owner_row["customer_name"] == "A" and owner_row["phone_number"] == PHONE
    assert (await logs(client, role="agent")).status_code == 403


async def test_both_kinds_of_row_come_with_the_columns_in_the_order_rows_are_read_by(app) -> None:
    from wabapool.storage import logs as log_store

    client, _clock = app
    await deduct(client, 1, "m1", waba_id=A)
    await refund(client, 1, "m1", "r1")
    async with client.context.service.database.read() as connection:
        for page in (log_store.deduction_page, log_store.refund_page):
            rows = await page(connection, 1, log_store.LogQuery(), after=None, limit=1)
            assert tuple(rows[0]._fields) == log_store.ROW_COLUMNS, page.__name__
