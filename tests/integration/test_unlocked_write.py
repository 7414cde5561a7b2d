"""A lone deduction read without the pool's lock is written only if the pool is still as it was read.

On PostgreSQL a group of one company that charges one package is read
outside a transaction and written in one statement guarded by the version it
read (`DeductionGroups._apply_unlocked`, `changes.write_if_unmoved`). Each
test here makes the pool move, or the connection drop, between the read and
the write, on the real server: the stale decision must never be written, the
deduction must still be applied exactly once, from what the pool became, and
the ledger must reconcile.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
from sqlalchemy import select

from tests import router
from tests.conftest import COMPANY_ID, WABA_IDS, provision_demo_pool, service_for, truncate_all
from tests.waiting import eventually
from wabapool.domain.errors import BillingError, Rejection
from wabapool.metrics import REGISTRY
from wabapool.service import BillingService, DeductionRequest, contended_pools
from wabapool.service import deductions as deduction_groups
from wabapool.service.reconcile import reconcile
from wabapool.storage.database import Database
from wabapool.storage.tables import outbox_events

pytestmark = pytest.mark.postgres

UNIT_PRICE = 10
ALLOWANCE = 1_000
# The guarded write as the server shows it in pg_stat_activity: its first CTE, the version bump (the guard
# itself lies past the 1,024 characters the server keeps of a query). Of the deduction path's statements only
# this one can wait for a package's row lock with that text: the locked path waits in its lock statement.
GUARDED_WRITE = "WITH bumped AS%UPDATE organization_packages SET%"

Interference = Callable[[], Awaitable[object]]


def _request(code: str, waba_id: str = WABA_IDS[0]) -> DeductionRequest:
    return DeductionRequest(COMPANY_ID, "wa", "wa_marketing_id", code, 1, waba_id, category="marketing")


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[Database]:
    db = Database(postgres_url)
    await truncate_all(db)
    yield db
    await db.dispose()


@pytest.fixture
async def warm(database: Database) -> BillingService:
    """A service (one process) with a provisioned pool, its WABA's package and the prices already kept."""
    service = service_for(database)
    await provision_demo_pool(service, allowance=ALLOWANCE, postpaid_limit=0, unit_price=UNIT_PRICE)
    await service.deduct(_request("warm-up"))
    return service


@pytest.fixture
def between_read_and_write(monkeypatch: pytest.MonkeyPatch) -> list[Interference]:
    """What runs after a lone deduction's read without the lock and before its guarded write (once each)."""
    pending: list[Interference] = []
    real = deduction_groups.write_if_unmoved

    async def interleaved(connection, change, *, at):  # type: ignore[no-untyped-def]
        while pending:
            await pending.pop(0)()
        return await real(connection, change, at=at)

    monkeypatch.setattr(deduction_groups, "write_if_unmoved", interleaved)
    return pending


async def _waiting_guarded_write(postgres_url: str) -> int | None:
    """The server process of a guarded write that waits for a row lock, if one does."""
    connection = await asyncpg.connect(postgres_url)
    try:
        return await connection.fetchval(  # type: ignore[no-any-return]
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            " AND query LIKE $1",
            GUARDED_WRITE,
        )
    finally:
        await connection.close()


@asynccontextmanager
async def _pool_held(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """Another writer holding the company's pool (its package row locked, in an open transaction); the
    caller commits or rolls back on the connection it is given (`COMMIT` / `ROLLBACK`)."""
    holder = await asyncpg.connect(postgres_url)
    try:
        await holder.execute("BEGIN")
        await holder.execute("SELECT id FROM organization_packages WHERE company_id = $1 FOR UPDATE", COMPANY_ID)
        yield holder
    finally:
        await holder.close()


def _groups_by_path() -> dict[str, float]:
    """The process's `wabapool_deduction_groups` counter, by path (an operator's view of the unlocked path)."""
    paths = ("unlocked", "unlocked_moved", "unlocked_declined", "locked")
    return {path: REGISTRY.get_sample_value("wabapool_deduction_groups_total", {"path": path}) or 0.0 for path in paths}


async def _assert_reconciles(database: Database, deductions: int) -> None:
    report = await reconcile(database)
    assert report.ok and report.checks["deductions"] == deductions, report.violations


@pytest.mark.parametrize("meanwhile", ["top_up", "deduction"])
async def test_a_pool_changed_by_another_process_between_the_read_and_the_write_is_charged_from_what_it_became(
    database: Database, warm: BillingService, between_read_and_write: list[Interference], meanwhile: str
) -> None:
    other = service_for(database)  # another process: its own queue, its own remembered packages
    if meanwhile == "top_up":
        between_read_and_write.append(lambda: other.top_up(COMPANY_ID, amount=500, payment_reference="pay-1"))
        expected_total, deductions = ALLOWANCE - UNIT_PRICE + 500 - UNIT_PRICE, 2
    else:
        between_read_and_write.append(lambda: other.deduct(_request("other", waba_id=WABA_IDS[1])))
        expected_total, deductions = ALLOWANCE - 3 * UNIT_PRICE, 3
    result = await warm.deduct(_request("raced"))
    assert not between_read_and_write, "the interference ran between the read and the write"
    total = (await warm.balance(COMPANY_ID)).total
    assert total == expected_total, "the write read before the change did not overwrite it"
    assert (result.amount, result.value_before, result.value_after) == (UNIT_PRICE, total + UNIT_PRICE, total)
    await _assert_reconciles(database, deductions=deductions)


async def test_after_its_pool_was_found_moved_a_process_takes_the_lock_for_the_pools_next_deductions(
    database: Database,
    warm: BillingService,
    between_read_and_write: list[Interference],
    statement_recorder: router.Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What is proven is that the pool is remembered as busy, not for how long: an hour, so that no pause
    # of a loaded machine between the two deductions can end it.
    monkeypatch.setattr(contended_pools, "CONTENDED_SECONDS", 3600.0)
    one, other = service_for(database), service_for(database)  # built after: they remember for the hour
    between_read_and_write.append(lambda: other.deduct(_request("other", waba_id=WABA_IDS[1])))
    before = _groups_by_path()
    await one.deduct(_request("found-moved"))
    statement_recorder.clear()
    await one.deduct(_request("next"))
    sent = [statement.sql for statement in statement_recorder.statements if statement.origin]
    assert sent[0].startswith("BEGIN") and "FOR UPDATE" in sent[1], "a busy pool: the lock, no wasted guarded write"
    assert not any("organization_packages.version = $" in sql for sql in sent)
    counted = {path: count - before[path] for path, count in _groups_by_path().items()}
    # `other` ran its own lone deduction unlocked; `one` tried once, found the pool moved, then locked twice.
    assert counted == {"unlocked": 1, "unlocked_moved": 1, "unlocked_declined": 0, "locked": 2}


async def test_a_guarded_write_that_waits_for_a_writer_holding_the_pool_takes_the_lock_once_that_writer_commits(
    database: Database, warm: BillingService, postgres_url: str, statement_recorder: router.Recorder
) -> None:
    async with _pool_held(postgres_url) as holder:
        statement_recorder.clear()
        deduction = asyncio.ensure_future(warm.deduct(_request("waited")))
        await eventually(lambda: _waiting_guarded_write(postgres_url), what="the guarded write waiting for the pool")
        # What every writer of the pool does last, under its lock: the version moves.
        await holder.execute("UPDATE organization_packages SET version = version + 1 WHERE company_id = $1", COMPANY_ID)
        await holder.execute("COMMIT")
        result = await deduction
    sent = [statement.sql for statement in statement_recorder.statements if statement.origin]
    guarded = next(i for i, sql in enumerate(sent) if "organization_packages.version = $" in sql)
    assert any("FOR UPDATE" in sql for sql in sent[guarded + 1 :]), "after the guard found the pool moved: the lock"
    assert (result.amount, result.replayed) == (UNIT_PRICE, False)
    assert (await warm.balance(COMPANY_ID)).total == ALLOWANCE - 2 * UNIT_PRICE
    await _assert_reconciles(database, deductions=2)


async def test_a_connection_lost_during_the_guarded_write_answers_outcome_unknown_and_a_retry_applies_once(
    database: Database, warm: BillingService, postgres_url: str
) -> None:
    async with _pool_held(postgres_url) as holder:
        deduction = asyncio.ensure_future(warm.deduct(_request("cut")))
        pid = await eventually(lambda: _waiting_guarded_write(postgres_url), what="the guarded write waiting")
        await holder.execute("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(BillingError) as unknown:
            await deduction
        await holder.execute("ROLLBACK")
    assert unknown.value.code is Rejection.OUTCOME_UNKNOWN, "a write outside a transaction may have committed"
    retried = await warm.deduct(_request("cut"))
    assert (retried.amount, retried.replayed) == (UNIT_PRICE, False), "it had not committed: applied now, once"
    assert (await warm.deduct(_request("cut"))).replayed
    assert (await warm.balance(COMPANY_ID)).total == ALLOWANCE - 2 * UNIT_PRICE
    await _assert_reconciles(database, deductions=2)


async def test_processes_racing_lone_deductions_and_top_ups_on_one_pool_lose_no_update(
    database: Database, warm: BillingService, postgres_url: str
) -> None:
    others = [Database(postgres_url) for _ in range(2)]
    try:
        senders = [warm, *(service_for(other) for other in others)]  # three processes, one sender each
        per_sender, top_ups = 30, 10

        async def send(service: BillingService, name: str) -> None:
            for index in range(per_sender):
                await service.deduct(_request(f"{name}-{index}", waba_id=WABA_IDS[index % len(WABA_IDS)]))

        async def fund(service: BillingService) -> None:
            for index in range(top_ups):
                await service.top_up(COMPANY_ID, amount=100, payment_reference=f"pay-{index}")

        await asyncio.gather(*(send(s, f"s{i}") for i, s in enumerate(senders)), fund(senders[1]))
    finally:
        for other in others:
            await other.dispose()
    charged = (1 + len(senders) * per_sender) * UNIT_PRICE
    assert (await warm.balance(COMPANY_ID)).total == ALLOWANCE - charged + top_ups * 100
    await _assert_reconciles(database, deductions=1 + len(senders) * per_sender)


async def _events_of(database: Database) -> list[str]:
    """The event types in the company's outbox, oldest first."""
    async with database.read() as connection:
        rows = await connection.execute(
            select(outbox_events.c.event_type)
            .where(outbox_events.c.company_id == COMPANY_ID)
            .order_by(outbox_events.c.id)
        )
        return [row.event_type for row in rows]


async def test_a_lone_deduction_that_runs_its_pool_below_zero_writes_its_events_in_its_guarded_write(
    database: Database, statement_recorder: router.Recorder
) -> None:
    service = service_for(database)
    await provision_demo_pool(service, allowance=ALLOWANCE, postpaid_limit=500, unit_price=UNIT_PRICE)
    await service.deduct(_request("warm-up"))
    before = _groups_by_path()
    statement_recorder.clear()
    dry = DeductionRequest(COMPANY_ID, "wa", "wa_marketing_id", "dry", ALLOWANCE // UNIT_PRICE, WABA_IDS[0])
    result = await service.deduct(dry)
    sent = [statement.sql for statement in statement_recorder.statements if statement.origin]
    assert result.value_after == -UNIT_PRICE
    assert len(sent) == 2 and "INSERT INTO outbox_events" in sent[1], "\n\n".join(sent)
    assert {path: count - before[path] for path, count in _groups_by_path().items()}["unlocked"] == 1
    view = await service.balance(COMPANY_ID)
    assert view.below_zero and view.low_balance, "the warning state was written with the version"
    assert await _events_of(database) == ["balance_low", "balance_below_zero"]
    await _assert_reconciles(database, deductions=2)


async def test_processes_racing_lone_deductions_past_zero_raise_each_event_once_and_lose_no_update(
    database: Database, postgres_url: str
) -> None:
    others = [Database(postgres_url) for _ in range(2)]
    try:
        first = service_for(database)
        await provision_demo_pool(first, allowance=ALLOWANCE, postpaid_limit=500, unit_price=UNIT_PRICE)
        senders = [first, *(service_for(other) for other in others)]  # three processes, one sender each
        per_sender = 40  # 1,200 charged of an allowance of 1,000: low, then below zero, mid-race

        async def send(service: BillingService, name: str) -> None:
            for index in range(per_sender):
                await service.deduct(_request(f"{name}-{index}", waba_id=WABA_IDS[index % len(WABA_IDS)]))

        await asyncio.gather(*(send(s, f"s{i}") for i, s in enumerate(senders)))
    finally:
        for other in others:
            await other.dispose()
    view = await first.balance(COMPANY_ID)
    assert view.total == ALLOWANCE - len(senders) * per_sender * UNIT_PRICE
    assert view.below_zero and view.low_balance
    assert await _events_of(database) == ["balance_low", "balance_below_zero"]
    await _assert_reconciles(database, deductions=len(senders) * per_sender)


def test_writes_outside_a_transaction_only_on_postgresql_reached_without_transaction_pooling(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def hook(_when: str, _connection: object) -> None:
        return None

    assert Database("postgresql://wabapool@127.0.0.1/db").writes_outside_transaction
    assert not Database("postgresql://wabapool@127.0.0.1/db?pooling=transaction").writes_outside_transaction
    assert not Database(f"sqlite:///{tmp_path / 'one.db'}").writes_outside_transaction
    assert not Database("postgresql://wabapool@127.0.0.1/db", commit_hook=hook).writes_outside_transaction
