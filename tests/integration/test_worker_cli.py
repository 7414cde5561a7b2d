"""`wabapool worker --once`, `events list | dead | replay`, `statements`: the operator's commands on a SQLite file."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import COMPANY_ID, TEST_PII_KEYS, FakeClock, provision_demo_pool, service_for
from tests.worker_receiver import Receiver
from wabapool.cli.main import app
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    return {
        "WABAPOOL_DATABASE_URL": url,
        "WABAPOOL_PII_KEYS": TEST_PII_KEYS,
        "WABAPOOL_WEBHOOK_ALLOW_PRIVATE": "true",
        "WABAPOOL_WEBHOOK_RETRY_SECONDS": "0,0",
        "WABAPOOL_WEBHOOK_TIMEOUT_SECONDS": "5",
        "COLUMNS": "220",
    }


def run(environment: dict[str, str], *arguments: str) -> str:
    result = CliRunner().invoke(app, list(arguments), env=environment)
    assert result.exit_code == 0, result.output
    return result.output


async def _prepare(url: str, receiver_url: str) -> tuple[str, str]:
    """A pool, a webhook and one top-up event; returns (the secret, the event id)."""
    database = Database(url)
    service = service_for(database)  # the real clock: the worker process reads it too
    try:
        await provision_demo_pool(service)
        secret = await service.set_webhook(COMPANY_ID, url=receiver_url)
        await service.top_up(COMPANY_ID, amount=100, payment_reference="pay-1")
        from wabapool.storage.outbox import list_events

        async with database.read() as connection:
            (event,) = await list_events(connection)
        return secret, event.event_id
    finally:
        await database.dispose()


def test_a_dead_letter_is_listed_and_replay_delivers_it_with_its_id(environment: dict[str, str]) -> None:
    with Receiver(default_status=500) as receiver:
        receiver.secret, event_id = asyncio.run(_prepare(environment["WABAPOOL_DATABASE_URL"], receiver.url))
        assert "handled" in run(environment, "worker", "--once")  # three attempts, then the dead letter
        assert [r.webhook_id for r in receiver.received] == [event_id] * 3
        dead = run(environment, "events", "dead")
        assert event_id in dead and "1 dead letters" in dead and "HTTP 500" in dead

        receiver.default_status = 200
        assert "queued again" in run(environment, "events", "replay", event_id)
        run(environment, "worker", "--once")
        assert receiver.received[-1].webhook_id == event_id and receiver.received[-1].verified
        assert [r.status for r in receiver.received] == [500, 500, 500, 200]
    delivered = run(environment, "events", "list", "--state", "delivered")
    assert event_id in delivered and "1 events" in delivered
    assert "0 dead letters" in run(environment, "events", "dead")


def test_replay_refuses_an_event_that_is_not_a_dead_letter(environment: dict[str, str]) -> None:
    with Receiver() as receiver:
        receiver.secret, event_id = asyncio.run(_prepare(environment["WABAPOOL_DATABASE_URL"], receiver.url))
    result = CliRunner().invoke(app, ["events", "replay", event_id], env=environment)
    assert result.exit_code == 1 and "not a dead letter" in result.output
    result = CliRunner().invoke(app, ["events", "replay", "no-such-event"], env=environment)
    assert result.exit_code == 1 and "no event" in result.output


def test_the_worker_refuses_to_start_without_pii_keys(environment: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["worker", "--once"], env={**environment, "WABAPOOL_PII_KEYS": ""})
    assert result.exit_code == 2 and "WABAPOOL_PII_KEYS" in result.output


def test_statements_lists_closed_cycles(environment: dict[str, str]) -> None:
    async def close_a_cycle() -> None:
        database = Database(environment["WABAPOOL_DATABASE_URL"])
        clock = FakeClock(datetime(2026, 11, 10, 3, 0, tzinfo=UTC))
        service = service_for(database, clock=clock)
        try:
            await provision_demo_pool(service)
            clock.now = datetime(2026, 12, 3, tzinfo=UTC)
            await service.reset_cycles()
        finally:
            await database.dispose()

    asyncio.run(close_a_cycle())
    output = run(environment, "statements", "--company-id", str(COMPANY_ID))
    assert "1 statements" in output and "2026-11-01 – 2026-12-01" in output and "1000 → 1000" in output
