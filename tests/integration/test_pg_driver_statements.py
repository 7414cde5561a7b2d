"""The deduction path's driver-level statements run inside the caller's transaction (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import COMPANY_ID, service_for, truncate_all
from tests.conftest import provision_demo_pool as provision
from tests.integration.test_engine_smoke import deduction
from wabapool.domain.errors import BillingError, Rejection
from wabapool.service.reconcile import reconcile
from wabapool.storage import pg, pools
from wabapool.storage.database import Database
from wabapool.storage.errors import StorageUnavailable

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_database(postgres_url: str) -> Database:
    database = Database(postgres_url)
    await truncate_all(database)
    yield database  # type: ignore[misc]
    await database.dispose()


async def test_a_driver_statement_first_in_a_transaction_is_rolled_back_with_it(pg_database: Database) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with pg_database.transaction() as connection:
            driver = await pg.driver(connection)
            await driver.execute(
                "INSERT INTO waba_cycle_spend (company_id, waba_id, cycle_start, spent_minor)"
                " VALUES (424242, 'w', now(), 1)"
            )
            assert driver.is_in_transaction()
            raise Abort
    async with pg_database.read() as connection:
        found = await connection.execute(text("SELECT count(*) FROM waba_cycle_spend WHERE company_id = 424242"))
        assert found.scalar_one() == 0


async def test_the_pool_lock_taken_by_a_driver_statement_holds_until_commit(pg_database: Database) -> None:
    await provision(service_for(pg_database))
    locked = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with pg_database.transaction() as connection:
            assert await pools.load_pool(connection, COMPANY_ID, for_update=True) is not None
            locked.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await locked.wait()
    async with pg_database.transaction() as connection:
        await connection.execute(text("SET LOCAL lock_timeout = '200ms'"))
        with pytest.raises(Exception, match="lock timeout"):
            await pools.load_pool(connection, COMPANY_ID, for_update=True)
    release.set()
    await task


async def _hold_connections(
    opened: Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]], count: int
) -> None:
    """`count` connections of this engine's pool checked out at once, so the pool holds that many."""
    holding: list[None] = []
    all_holding = asyncio.Event()
    hold = asyncio.Event()

    async def pooled() -> None:
        async with opened() as connection:
            await connection.execute(text("SELECT 1"))
            holding.append(None)
            if len(holding) == count:
                all_holding.set()
            await hold.wait()

    holders = [asyncio.create_task(pooled()) for _ in range(count)]
    async with asyncio.timeout(30):
        await all_holding.wait()
    hold.set()
    await asyncio.gather(*holders)


@pytest.mark.parametrize("process", ["cold", "warm"])
async def test_after_the_server_drops_every_connection_deductions_recover_at_once(
    pg_database: Database, postgres_url: str, process: str
) -> None:
    """No ping before each checkout: a dropped connection costs one failed attempt, not one per pooled connection.

    Cold: the process has not charged yet, so a group's first statement is the WABA look-up (through
    SQLAlchemy). Warm: WABAs and prices are remembered, so its first statement is the lock, sent on the driver.
    """
    service = service_for(pg_database)
    await provision(service)
    await _hold_connections(pg_database.read, 3)
    if process == "warm":
        await _hold_connections(pg_database.transaction, 3)
        assert (await service.deduct(deduction("warm-up"))).deduction_id > 0
    admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
    try:
        dropped = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert dropped >= (6 if process == "warm" else 3)
    failures = 0
    for attempt in range(6):
        try:
            result = await service.deduct(deduction(f"after-{attempt}"))
        except BillingError as error:  # the dead connection's error, before commit: nothing was written
            assert error.code is Rejection.UNAVAILABLE, error
            failures += 1
            continue
        assert result.deduction_id > 0
    assert failures <= 1
    try:
        report = await reconcile(pg_database)
    except StorageUnavailable:  # the read pool's dropped connections cost one failed attempt too, no more
        report = await reconcile(pg_database)
    assert report.ok


async def test_after_the_server_drops_every_connection_reads_on_the_driver_recover_at_once(
    pg_database: Database, postgres_url: str
) -> None:
    """The CSV export reads on the driver itself (`storage.logs`): a dropped read connection fails once too."""
    await _hold_connections(pg_database.read, 3)
    select_one = pg.Compiled("SELECT 1 AS one", (), {})
    admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    failures = 0
    for _ in range(5):
        try:
            async with pg_database.read() as connection:
                assert [row["one"] for row in await pg.fetch(connection, select_one)] == [1]
        except StorageUnavailable:
            failures += 1
    assert failures <= 1


@pytest.mark.parametrize("size", [3, 200], ids=["one-statement group", "COPY group"])
async def test_a_code_already_taken_in_a_group_is_replayed_and_charged_once(pg_database: Database, size: int) -> None:
    service = service_for(pg_database)
    await provision(service, allowance=1_000_000, postpaid_limit=0)
    first = await service.deduct(deduction("taken"))
    batch = [deduction(f"new-{i}") for i in range(size - 1)]
    batch.insert(1, deduction("taken"))
    outcomes = await service.deduct_batch(batch)
    assert [o.status for o in outcomes].count("applied") == size - 1
    assert outcomes[1].status == "replayed" and outcomes[1].unwrap().deduction_id == first.deduction_id
    view = await service.balance(COMPANY_ID)
    assert view.total == 1_000_000 - 10 * size
    assert (await reconcile(pg_database)).ok
