"""`serve --demo`'s history: two weeks of spend on the injected clock, a low pool, events, dated window prices."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from tests.conftest import service_for
from wabapool import bootstrap
from wabapool.cli.demo import DEMO_COMPANY_ID, DEMO_WABAS, PAGE_DEMO_DAYS, seed_page_demo
from wabapool.pii import DEVELOPMENT_KEYS, PiiSealer
from wabapool.service.reconcile import reconcile
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade
from wabapool.storage.tables import deduction_requests, outbox_events


async def _seeded(tmp_path: Path, now: datetime) -> Database:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    upgrade(url)
    database = Database(url)
    await seed_page_demo(bootstrap.billing_service(database, sealer=PiiSealer(DEVELOPMENT_KEYS)), now=now)
    return database


async def test_the_demo_history_spreads_over_the_cycle_and_leaves_the_pool_low(tmp_path: Path) -> None:
    now = datetime(2026, 12, 1, 19, 30, tzinfo=UTC)
    database = await _seeded(tmp_path, now)
    try:
        view = await service_for(database, clock=lambda: now).balance(DEMO_COMPANY_ID)
        async with database.read() as connection:
            rows = list(await connection.execute(select(deduction_requests)))
            events = [row.event_type for row in await connection.execute(select(outbox_events))]
        report = await reconcile(database)
    finally:
        await database.dispose()
    assert view.low_balance and not view.below_zero
    assert view.cycle_starts_at == datetime(2026, 11, 18, 17, 0, tzinfo=UTC)  # 19 Nov, Jakarta midnight
    this_cycle = [row for row in rows if row.created_at.replace(tzinfo=UTC) >= view.cycle_starts_at]
    days = {row.created_at.replace(tzinfo=UTC).astimezone(UTC).date() for row in this_cycle}
    assert len(days) >= PAGE_DEMO_DAYS - 1
    assert max(row.created_at.replace(tzinfo=UTC) for row in rows) < now
    assert {row.waba_id for row in this_cycle} == {waba_id for waba_id, _ in DEMO_WABAS}
    assert all(spend.spent_this_cycle > 0 for spend in view.wabas)
    # Promo's marketing cap, close to full: the next message warns, the one after is refused.
    assert events == ["cycle_reset", "balance_topped_up", "balance_low", "waba_cap_warning", "waba_cap_reached"]
    assert report.ok, report.violations


async def test_window_messages_are_free_before_october_2026_and_charged_from_then(tmp_path: Path) -> None:
    before = await _seeded(tmp_path, datetime(2026, 9, 25, 12, 0, tzinfo=UTC))
    try:
        async with before.read() as connection:
            rows = list(await connection.execute(select(deduction_requests)))
    finally:
        await before.dispose()
    by_code: dict[str, set[int]] = {}
    for row in rows:
        by_code.setdefault(row.deduction_code, set()).add(row.amount_minor)
    assert by_code["wa_utility_id"] == {0} and by_code["wa_service_id"] == {0}
    assert by_code["wa_marketing_id"] == {68_000}

    after_path = tmp_path / "after"
    after_path.mkdir()
    after = await _seeded(after_path, datetime(2026, 10, 10, 12, 0, tzinfo=UTC))  # the cycle spans 1 Oct
    try:
        async with after.read() as connection:
            rows = list(await connection.execute(select(deduction_requests)))
    finally:
        await after.dispose()
    charged = [row for row in rows if row.created_at.replace(tzinfo=UTC) >= datetime(2026, 9, 30, 17, 0, tzinfo=UTC)]
    free = [row for row in rows if row.created_at.replace(tzinfo=UTC) < datetime(2026, 9, 30, 17, 0, tzinfo=UTC)]
    assert {row.amount_minor for row in charged if row.deduction_code == "wa_utility_id"} == {35_600}
    assert {row.amount_minor for row in charged if row.deduction_code == "wa_service_id"} == {15_000}
    assert {row.amount_minor for row in free if row.deduction_code == "wa_utility_id"} == {0}
