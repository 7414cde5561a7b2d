"""The one write contract: the same changes through every strategy, on both databases, write the same rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import (
    COMPANY_ID,
    TEST_PII_KEYS,
    WABA_IDS,
    FakeClock,
    provision_demo_pool,
    service_for,
    truncate_all,
)
from wabapool.domain import operations
from wabapool.domain.deduction import decide
from wabapool.domain.pricing import PriceBook
from wabapool.pii import PiiSealer
from wabapool.service import DeductionRequest
from wabapool.service.deduction_rows import Prepared, pool_changes_of
from wabapool.storage import companies as company_store
from wabapool.storage import pools as pool_store
from wabapool.storage.changes import Strategy, reserve_deduction_ids, write_changes
from wabapool.storage.database import Database
from wabapool.storage.errors import UniqueConflict
from wabapool.storage.migrate import upgrade
from wabapool.storage.tables import (
    billing_components,
    deduction_requests,
    ledger_entries,
    organization_packages,
    outbox_events,
    quota_buckets,
    waba_cycle_spend,
    waba_daily_usage,
)

# Inside November 2026's cycle, and a clock past its end so the write carries a cycle reset too.
PROVISIONED_AT = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)
WRITTEN_AT = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
SEALER = PiiSealer(TEST_PII_KEYS)


def _items() -> list[Prepared]:
    """Splits across all three buckets, a repeat inside the group, a refusal for an unknown WABA, PII."""
    requests = [
        DeductionRequest(COMPANY_ID, "wa", "wa_marketing_id", f"m{i}", 40 + i, WABA_IDS[i % 3], broadcast_id="b1")
        for i in range(5)
    ]
    requests.append(requests[0])
    requests.append(DeductionRequest(COMPANY_ID, "wa", "wa_marketing_id", "x", 1, "999"))
    requests.append(
        DeductionRequest(
            COMPANY_ID, "wa", "wa_marketing_id", "pii", 3, WABA_IDS[0], customer_name="Siti", phone_number="+6281"
        )
    )
    return [Prepared.of(request, SEALER, "contract") for request in requests]


async def _write_one_group(database: Database, strategy: Strategy) -> None:
    """Decide a group against the provisioned pool and write it with the given strategy."""
    items = _items()
    async with database.transaction() as connection:
        prices = await company_store.prices_for(connection, COMPANY_ID, {"wa_marketing_id"})
        reserved = await reserve_deduction_ids(connection, len(items))
        pool = await pool_store.load_pool(connection, COMPANY_ID, for_update=True)
        assert pool is not None
        caught_up = operations.catch_up(pool.state, WRITTEN_AT)
        decided = decide(
            items,
            {pool.package_id: caught_up.state},
            {},
            dict.fromkeys(WABA_IDS, pool.package_id),
            PriceBook(prices, company_id=COMPANY_ID, at=WRITTEN_AT),
        )
        ids = {(COMPANY_ID, a.item.unique_code): row_id for a, row_id in zip(decided.applied, reserved, strict=False)}
        changes = pool_changes_of(pool, caught_up, decided, ids, WRITTEN_AT)
        await write_changes(connection, [changes], at=WRITTEN_AT, strategy=strategy)


async def _rows(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the write touched, without values that are random by design (event ids)."""
    tables = {
        "deduction_requests": select(deduction_requests).order_by(deduction_requests.c.id),
        "ledger_entries": select(ledger_entries).order_by(ledger_entries.c.id),
        "quota_buckets": select(quota_buckets).order_by(quota_buckets.c.quota_type),
        "waba_cycle_spend": select(waba_cycle_spend).order_by(
            waba_cycle_spend.c.cycle_start, waba_cycle_spend.c.waba_id
        ),
        "waba_daily_usage": select(waba_daily_usage).order_by(waba_daily_usage.c.day, waba_daily_usage.c.waba_id),
        "organization_packages": select(organization_packages),
        "billing_components": select(billing_components),
        "outbox_events": select(*[c for c in outbox_events.c if c.name != "event_id"]).order_by(outbox_events.c.id),
    }
    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with database.read() as connection:
        for name, query in tables.items():
            rows[name] = [tuple(_opened(row)) for row in await connection.execute(query)]
    return rows


def _opened(row: Any) -> list[Any]:
    """Sealed personal data differs by its nonce each time: compare what it opens to."""
    mapping = row._mapping
    return [SEALER.open(value) if str(key).endswith("_enc") else value for key, value in mapping.items()]


async def _written_by(database: Database, strategy: Strategy) -> dict[str, list[tuple[Any, ...]]]:
    service = service_for(database, clock=FakeClock(PROVISIONED_AT))
    await provision_demo_pool(service, allowance=100, postpaid_limit=200, unit_price=1)
    await service.top_up(COMPANY_ID, amount=50, payment_reference="p1")
    await _write_one_group(database, strategy)
    return await _rows(database)


@pytest.mark.postgres
async def test_every_strategy_on_either_database_writes_the_same_rows(postgres_url: str, tmp_path) -> None:
    results: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    sqlite_url = f"sqlite:///{tmp_path / 'contract.db'}"
    upgrade(sqlite_url)
    runs: list[tuple[str, str, Strategy]] = [
        ("sqlite core", sqlite_url, "core"),
        ("postgresql core", postgres_url, "core"),
        ("postgresql copy", postgres_url, "copy"),
        ("postgresql statement", postgres_url, "statement"),
    ]
    for name, url, strategy in runs:
        database = Database(url)
        try:
            if url == postgres_url:
                await truncate_all(database)
            results[name] = await _written_by(database, strategy)
        finally:
            await database.dispose()
    reference = results["sqlite core"]
    assert len(reference["deduction_requests"]) == 6  # five new codes and the PII one; the repeat is a replay
    assert {row[3] for row in reference["ledger_entries"]} >= {"deduction", "reset", "top_up"}
    assert len(reference["waba_daily_usage"]) == 3  # the group's day, one row for each WABA it charged
    # The rare parts too: events (the one statement's events CTE) and the moved package state (the version
    # bump's SET): the new cycle, and the warning flags of a pool run below zero.
    assert {row[2] for row in reference["outbox_events"]} >= {"balance_below_zero"}
    assert reference["organization_packages"][0][4] > PROVISIONED_AT  # the cycle the clock's reset began
    for name, rows in results.items():
        for table, expected in reference.items():
            assert rows[table] == expected, f"{name} wrote {table} differently"


@pytest.mark.parametrize("strategy", ["core", "copy", "statement"])
@pytest.mark.postgres
async def test_a_unique_code_already_taken_is_a_unique_conflict_and_nothing_of_the_group_stays(
    postgres_url: str, strategy: Strategy
) -> None:
    database = Database(postgres_url)
    try:
        await truncate_all(database)
        service = service_for(database, clock=FakeClock(PROVISIONED_AT))
        await provision_demo_pool(service, allowance=100, postpaid_limit=200, unit_price=1)
        await service.deduct(DeductionRequest(COMPANY_ID, "wa", "wa_marketing_id", "m3", 1, WABA_IDS[0]))
        before = await _rows(database)
        with pytest.raises(UniqueConflict):
            await _write_one_group(database, strategy)
        assert await _rows(database) == before
    finally:
        await database.dispose()
