"""GET /billing_events: the alert history with each event's delivery state, newest first, by cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from tests.api_support import PUBLIC, bearer
from tests.conftest import FakeClock
from tests.reports_support import database_url, deduct, provision, report_app, top_up
from wabapool.api.context import AppContext
from wabapool.storage.tables import outbox_events

WABA = "7770001"


@pytest.fixture(params=["sqlite", "postgres"])
async def app(
    request: pytest.FixtureRequest, tmp_path
) -> AsyncIterator[tuple[httpx.AsyncClient, AppContext, FakeClock]]:
    postgres = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    clock = FakeClock(datetime(2026, 11, 10, 3, 0, tzinfo=UTC))
    async with report_app(database_url(request.param, tmp_path, postgres), clock) as (client, context):
        await provision(client, 1, wabas=(WABA,))
        await provision(client, 2, wabas=("7779999",))
        yield client, context, clock


async def raise_events(client: httpx.AsyncClient, clock: FakeClock, company_id: int = 1, waba: str = WABA) -> None:
    """balance_low (61% of the allowance spent), then a top-up, then low again: three events, a minute apart."""
    await deduct(client, company_id, f"low-{company_id}", waba_id=waba, quantity=61)
    clock.advance(minutes=1)
    await top_up(client, company_id, 50_000, f"pay-{company_id}")
    clock.advance(minutes=1)
    await deduct(client, company_id, f"low-again-{company_id}", waba_id=waba, quantity=60)
    clock.advance(minutes=1)


async def events(client: httpx.AsyncClient, company_id: int = 1, role: str = "owner", **params: str) -> httpx.Response:
    return await client.get(f"{PUBLIC}/billing_events", params=params, headers=bearer(company_id, role))


async def test_events_come_newest_first_with_their_pool_figures_and_pending_delivery(app) -> None:
    client, _context, clock = app
    await raise_events(client, clock)
    body = (await events(client)).json()
    types = [event["type"] for event in body["data"]]
    assert types == ["balance_low", "balance_topped_up", "balance_low"]
    times = [event["created_at"] for event in body["data"]]
    assert times == sorted(times, reverse=True)
    first = body["data"][-1]
    assert first["data"]["total"] == 100_000 - 61_000 and "available" in first["data"]
    assert first["delivery"] == {
        "state": "pending",
        "attempts": 0,
        "delivered_at": None,
        "next_attempt_at": first["created_at"],
        "last_error": None,
    }
    assert body["next_cursor"] is None
    assert all(len(event["id"]) == 36 for event in body["data"])


async def test_the_delivery_state_follows_the_outbox_columns(app) -> None:
    client, context, clock = app
    await raise_events(client, clock)
    newest, middle, oldest = [e["id"] for e in (await events(client)).json()["data"]]
    now = clock.now
    async with context.service.database.transaction() as connection:
        table = outbox_events
        await connection.execute(
            update(table).where(table.c.event_id == oldest).values(delivered_at=now, attempts=1, next_attempt_at=None)
        )
        await connection.execute(
            update(table)
            .where(table.c.event_id == middle)
            .values(attempts=2, next_attempt_at=now + timedelta(minutes=5), last_error="HTTP 500")
        )
        await connection.execute(
            update(table)
            .where(table.c.event_id == newest)
            .values(attempts=8, next_attempt_at=None, last_error="timeout")
        )
    by_id = {e["id"]: e["delivery"] for e in (await events(client)).json()["data"]}
    assert by_id[oldest]["state"] == "delivered" and by_id[oldest]["delivered_at"] is not None
    assert by_id[middle] == {
        "state": "failed",
        "attempts": 2,
        "delivered_at": None,
        "next_attempt_at": by_id[middle]["next_attempt_at"],
        "last_error": "HTTP 500",
    }
    assert by_id[middle]["next_attempt_at"] is not None
    assert by_id[newest]["state"] == "dead" and by_id[newest]["last_error"] == "timeout"


async def test_pages_hold_every_event_once_and_only_the_companys_own(app) -> None:
    client, _context, clock = app
    await raise_events(client, clock)
    await raise_events(client, clock, company_id=2, waba="7779999")
    seen, cursor = [], None
    while True:
        page = (await events(client, limit="1", **({"cursor": cursor} if cursor else {}))).json()
        seen += [e["id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    everything = [e["id"] for e in (await events(client)).json()["data"]]
    assert seen == everything and len(seen) == 3
    theirs = {e["id"] for e in (await events(client, 2)).json()["data"]}
    assert not theirs & set(seen)


async def test_a_tampered_or_foreign_cursor_is_a_400_in_the_envelope(app) -> None:
    client, _context, clock = app
    await raise_events(client, clock)
    await raise_events(client, clock, company_id=2, waba="7779999")
    mine = (await events(client, limit="1")).json()["next_cursor"]
    theirs = (await events(client, 2, limit="1")).json()["next_cursor"]
    body, _, tag = mine.partition(".")
    for cursor in (theirs, body + "." + tag[::-1], body[:-2] + "." + tag, "x", "...", "%%%", body):
        response = await events(client, cursor=cursor)
        assert response.status_code == 400, (cursor, response.text)
        assert response.json()["error"]["details"] == {"field": "cursor"}


@pytest.mark.parametrize(
    ("role", "status"), [("owner", 200), ("admin", 200), ("supervisor", 200), ("agent", 403), ("member", 403)]
)
async def test_billing_events_are_for_owner_admin_and_supervisor(app, role: str, status: int) -> None:
    client, _context, _clock = app
    response = await events(client, role=role)
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"]["code"] == "forbidden"
