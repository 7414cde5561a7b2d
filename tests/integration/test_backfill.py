"""The backfill (v2 → v3) and its rollback, on SQLite and PostgreSQL: sums, ledger, dry run, crash, rollback, CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from tests.conftest import TEST_PII_KEYS, FakeClock, service_for
from wabapool.cli.main import app
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.limits import AMOUNT_MAX_MINOR
from wabapool.domain.pool import Buckets, MoveKind
from wabapool.service import BillingService, CompanyTerms, DeductionRequest, PackageTerms, backfill_rollback
from wabapool.service import backfill as backfill_service
from wabapool.service.reconcile import reconcile
from wabapool.storage import companies as company_store
from wabapool.storage import pools as pool_store
from wabapool.storage.database import Database
from wabapool.storage.tables import (
    companies,
    ledger_entries,
    metadata,
    organization_packages,
    quota_buckets,
    whatsapp_packages,
)

V2 = 31
PRICE = 100
# Allowance, postpaid limit, messages sent (×PRICE), top-up: three WABAs with different balances.
WABAS = {
    "3101": (5_000, 0, 12, 700),  # allowance partly used, some additional credit
    "3102": (2_000, 3_000, 35, 0),  # allowance gone, 1,500 into postpaid
    "3103": (0, 0, 0, 2_500),  # additional only
}


async def provision_v2(service: BillingService, company_id: int = V2, wabas: dict[str, Any] = WABAS) -> None:
    """A v2 company, one package per WABA, each charged and funded differently."""
    await service.provision_company(company_id, CompanyTerms(billing_version="v2"))
    await service.set_price("wa_marketing_id", unit_price_minor=PRICE, effective_from=datetime(2025, 7, 1, tzinfo=UTC))
    for waba_id, (allowance, limit, sent, top_up) in wabas.items():
        waba = f"{company_id}{waba_id}"
        await service.provision_waba(
            company_id, waba, name=f"WABA {waba}", package=PackageTerms(allowance=allowance, postpaid_limit=limit)
        )
        if sent:
            await service.deduct(DeductionRequest(company_id, "wa", "wa_marketing_id", f"{waba}-m", sent, waba))
        if top_up:
            await service.top_up(company_id, amount=top_up, payment_reference=f"{waba}-pay", waba_id=waba)


async def packages_of(database: Database, company_id: int) -> list[pool_store.LockedPool]:
    async with database.read() as connection:
        return await pool_store.company_packages(connection, company_id, for_update=False)


async def table_rows(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: what "nothing written" is compared against."""
    async with database.read() as connection:
        return {
            table.name: sorted(map(tuple, await connection.execute(select(table))), key=repr)
            for table in metadata.sorted_tables
        }


def total(buckets: list[Buckets]) -> Buckets:
    return Buckets(*map(sum, zip(*buckets, strict=True)))


async def test_backfill_moves_three_v2_wabas_into_one_pool_holding_their_sums(
    service: BillingService, database: Database
) -> None:
    await provision_v2(service)
    before = [package.state.buckets for package in await packages_of(database, V2)]
    assert [b.postpaid_used for b in before] == [0, 1_500, 0]

    plan = await backfill_service.backfill_company(service.context, V2)

    assert plan.verification is not None and plan.verification.ok
    (pool,) = await packages_of(database, V2)
    assert pool.waba_id is None
    assert pool.state.buckets == total(before)
    assert pool.state.buckets == Buckets(7_000, 3_800, 3_200, 3_000, 1_500, 3_200)
    async with database.read() as connection:
        version = (await connection.execute(select(companies.c.billing_version))).scalar_one()
        pointers = set((await connection.execute(select(whatsapp_packages.c.organization_package_id))).scalars())
        closed = (
            await connection.execute(select(func.count()).where(organization_packages.c.closed_at.is_not(None)))
        ).scalar_one()
        moved = list(
            await connection.execute(select(ledger_entries).where(ledger_entries.c.kind == MoveKind.MIGRATION))
        )
    assert version == "v3" and pointers == {pool.package_id} and closed == 3
    # Every unit explained: each package's entries take its buckets to 0, the pool's add the same amounts.
    on_pool = [e for e in moved if e.organization_package_id == pool.package_id]
    off_packages = [e for e in moved if e.organization_package_id != pool.package_id]
    assert sum(e.amount_minor for e in on_pool) == pool.state.buckets.total
    assert sum(e.amount_minor for e in off_packages) == -pool.state.buckets.total
    assert {e.reference for e in on_pool} == {e.reference for e in off_packages}
    assert all(e.reference.startswith("migration:package:") for e in moved)
    report = await reconcile(database)
    assert report.ok, report.violations


async def test_backfill_dry_run_writes_nothing(service: BillingService, database: Database) -> None:
    await provision_v2(service)
    rows = await table_rows(database)
    plan = await backfill_service.plan_company(service.context, V2)
    assert plan.new_pool and plan.pool_after == total([p.buckets for p in plan.packages])
    assert [p.waba_ids for p in plan.packages] == [(f"{V2}{w}",) for w in WABAS]
    assert await table_rows(database) == rows


async def test_backfill_twice_is_a_no_op(service: BillingService, database: Database) -> None:
    await provision_v2(service)
    await backfill_service.backfill_company(service.context, V2)
    rows = await table_rows(database)
    assert await backfill_service.companies_to_move(service.context) == []
    again = await backfill_service.backfill_company(service.context, V2)
    assert not again.moves_anything and again.verification is None
    assert await table_rows(database) == rows


async def company_rows(database: Database, company_ids: list[int]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of these companies in every table that has a company_id, sorted."""
    async with database.read() as connection:
        return {
            table.name: sorted(
                map(tuple, await connection.execute(select(table).where(table.c.company_id.in_(company_ids)))),
                key=repr,
            )
            for table in metadata.sorted_tables
            if "company_id" in table.c
        }


async def test_a_crash_inside_a_company_s_move_leaves_it_untouched_the_earlier_moved_and_a_rerun_completes(
    service: BillingService, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [41, 42, 43, 44]
    for company_id in ids:
        await provision_v2(service, company_id)
    untouched = await company_rows(database, [43, 44])
    point_wabas = company_store.point_wabas
    entries_of_43 = select(func.count()).select_from(ledger_entries).where(ledger_entries.c.company_id == 43)
    async with database.read() as connection:
        entries_before = (await connection.execute(entries_of_43)).scalar_one()
    entries_seen_inside: list[int] = []

    async def crash_in_43(connection: Any, company_id: int, *args: Any, **kwargs: Any) -> Any:
        # Inside company 43's transaction, after its pool and ledger entries were written (seen on its connection).
        if company_id == 43:
            entries_seen_inside.append((await connection.execute(entries_of_43)).scalar_one())
            raise KeyboardInterrupt("operator pressed Ctrl-C")
        return await point_wabas(connection, company_id, *args, **kwargs)

    monkeypatch.setattr(company_store, "point_wabas", crash_in_43)
    with pytest.raises(KeyboardInterrupt):
        await backfill_service.backfill_all(service.context, ids)
    monkeypatch.setattr(company_store, "point_wabas", point_wabas)
    # The crash came after the move had written 43's migration entries: there was something to roll back.
    assert entries_seen_inside and entries_seen_inside[0] > entries_before
    assert await backfill_service.companies_to_move(service.context) == [43, 44]
    assert await company_rows(database, [43, 44]) == untouched  # 43's half-done move rolled back whole
    for company_id in (41, 42):
        (pool,) = await packages_of(database, company_id)
        assert pool.waba_id is None
    assert (await reconcile(database)).ok

    plans = await backfill_service.backfill_all(
        service.context, await backfill_service.companies_to_move(service.context)
    )
    assert [p.company_id for p in plans] == [43, 44] and all(p.verification and p.verification.ok for p in plans)
    assert await backfill_service.companies_to_move(service.context) == []
    for company_id in ids:
        (pool,) = await packages_of(database, company_id)
        assert pool.state.buckets == Buckets(7_000, 3_800, 3_200, 3_000, 1_500, 3_200)


async def test_backfill_merges_flag_off_wabas_into_an_existing_pool_and_refuses_to_roll_that_back(
    service: BillingService, database: Database
) -> None:
    await service.provision_company(V2, CompanyTerms(package=PackageTerms(allowance=1_000, postpaid_limit=500)))
    await service.provision_waba(V2, "in-pool", name="joins the pool")
    await service.provision_company(V2, CompanyTerms(waba_save_organization_id=False))
    await service.provision_waba(V2, "own", name="own package", package=PackageTerms(allowance=300))
    pool_id = (await packages_of(database, V2))[0].package_id

    await backfill_service.backfill_company(service.context, V2)

    (pool,) = await packages_of(database, V2)
    assert pool.package_id == pool_id
    assert pool.state.buckets == Buckets(1_300, 1_300, 0, 500, 0, 0)
    assert (await reconcile(database)).ok

    # Its rollback is refused (a WABA's package would change while the pool stays open), and writes nothing.
    rows = await table_rows(database)
    with pytest.raises(backfill_rollback.RollbackRefused):
        await backfill_rollback.rollback_company(service.context, V2, confirm=True)
    assert await table_rows(database) == rows


async def test_rollback_right_after_the_backfill_restores_every_package_exactly(
    service: BillingService, database: Database, clock: FakeClock
) -> None:
    await provision_v2(service)
    before = {p.package_id: p.state for p in await packages_of(database, V2)}
    await backfill_service.backfill_company(service.context, V2)
    clock.advance(minutes=5)

    plan = await backfill_rollback.rollback_company(service.context, V2)

    assert plan.exact and plan.applied and plan.money_conserved
    after = {p.package_id: p.state for p in await packages_of(database, V2)}
    assert after == before
    async with database.read() as connection:
        version = (await connection.execute(select(companies.c.billing_version))).scalar_one()
        pointers = dict(
            map(
                tuple,
                await connection.execute(
                    select(whatsapp_packages.c.waba_id, whatsapp_packages.c.organization_package_id)
                ),
            )
        )
    assert version == "v2"
    assert pointers == {state.waba_id: package_id for package_id, state in before.items()}
    assert (await reconcile(database)).ok
    # Moved again after the round trip: the same sums.
    await backfill_service.backfill_company(service.context, V2)
    (pool,) = await packages_of(database, V2)
    assert pool.state.buckets == total([state.buckets for state in before.values()])


async def test_rollback_after_a_v3_deduction_splits_the_balance_only_with_confirm(
    service: BillingService, database: Database, clock: FakeClock
) -> None:
    await provision_v2(service)
    await backfill_service.backfill_company(service.context, V2)
    clock.advance(minutes=5)
    # 3,800 allowance and 3,200 additional in the pool: this takes all the allowance and 1,001 of additional.
    await service.set_price("wa_odd_id", unit_price_minor=4_801, effective_from=datetime(2025, 7, 1, tzinfo=UTC))
    await service.deduct(DeductionRequest(V2, "wa", "wa_odd_id", "after", 1, f"{V2}3103"))
    rows = await table_rows(database)

    unconfirmed = await backfill_rollback.rollback_company(service.context, V2)
    assert not unconfirmed.exact and not unconfirmed.applied
    assert await table_rows(database) == rows

    plan = await backfill_rollback.rollback_company(service.context, V2, confirm=True)
    assert plan.applied and plan.money_conserved
    shares = {part.waba_id: part.share for part in plan.parts}
    # additional 2,199 split as brought (700 : 0 : 2,500): 481.03 and 1,717.97 floored, the unit left to the first.
    assert [shares[f"{V2}{w}"].additional_remaining for w in WABAS] == [482, 0, 1_717]
    assert [shares[f"{V2}{w}"].initial_remaining for w in WABAS] == [0, 0, 0]
    assert [shares[f"{V2}{w}"].postpaid_used for w in WABAS] == [0, 1_500, 0]
    # Terms back as they were: the pool still held their sum.
    assert [shares[f"{V2}{w}"].initial_allowance for w in WABAS] == [5_000, 2_000, 0]
    packages = await packages_of(database, V2)
    assert len(packages) == 3 and all(p.waba_id is not None for p in packages)
    assert total([p.state.buckets for p in packages]).total == 2_199 - 1_500
    assert (await reconcile(database)).ok


def test_backfill_cli_dry_run_then_move_then_rollback(tmp_path, monkeypatch) -> None:
    import asyncio

    from wabapool.storage.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    monkeypatch.setenv("WABAPOOL_DATABASE_URL", url)
    monkeypatch.setenv("WABAPOOL_PII_KEYS", TEST_PII_KEYS)  # the CLI's service seals with the configured keys

    async def seed() -> None:
        database = Database(url)
        try:
            await provision_v2(service_for(database))
        finally:
            await database.dispose()

    asyncio.run(seed())
    runner = CliRunner()
    dry = runner.invoke(app, ["backfill", "--company-id", str(V2), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "nothing written" in dry.output and "new pool" in dry.output and "→ pool" in dry.output
    moved = runner.invoke(app, ["backfill", "--all"])
    assert moved.exit_code == 0, moved.output
    assert "WABAs on the pool: 3/3 (100%)" in moved.output and "reconcile: ok" in moved.output
    again = runner.invoke(app, ["backfill", "--all"])
    assert again.exit_code == 0 and "moved 0 companies" in again.output
    back = runner.invoke(app, ["backfill", "--rollback", "--company-id", str(V2)])
    assert back.exit_code == 0, back.output
    assert "exact" in back.output and "rolled back" in back.output
    bad = runner.invoke(app, ["backfill", "--rollback", "--all"])
    assert bad.exit_code == 2


@pytest.fixture
async def pg_database(postgres_url: str):  # type: ignore[no-untyped-def]
    from tests.conftest import truncate_all

    database = Database(postgres_url)
    await truncate_all(database)
    yield database
    await database.dispose()


async def test_deductions_during_the_backfill_are_charged_once_each_to_a_package_open_when_they_applied(
    pg_database: Database,
) -> None:
    import asyncio

    from wabapool.storage.tables import deduction_requests

    service = service_for(pg_database)
    big = {waba: (1_000_000, 100_000, 0, 0) for waba in WABAS}
    await provision_v2(service, wabas=big)
    wabas = [f"{V2}{waba}" for waba in WABAS]
    money_before = total([p.state.buckets for p in await packages_of(pg_database, V2)]).total

    first_applied = asyncio.Event()

    async def sender(lane: int) -> list[str]:
        # Each lane sends one after another: some before the move locks, some waiting on its lock, some after.
        statuses = []
        for step in range(10):
            index = lane * 10 + step
            request = DeductionRequest(V2, "wa", "wa_marketing_id", f"c-{index}", 1 + index % 3, wabas[lane % 3])
            statuses.append((await service.deduct_one(request)).status)
            first_applied.set()
        return statuses

    async def move() -> backfill_service.CompanyPlan:
        await first_applied.wait()
        return await backfill_service.backfill_company(service.context, V2)

    *lanes, plan = await asyncio.gather(*(sender(lane) for lane in range(15)), move())
    assert plan.verification is not None and plan.verification.ok
    assert {status for lane in lanes for status in lane} == {"applied"}

    async with pg_database.read() as connection:
        rows = list(
            await connection.execute(
                select(
                    deduction_requests.c.unique_code,
                    deduction_requests.c.amount_minor,
                    deduction_requests.c.created_at,
                    organization_packages.c.closed_at,
                    organization_packages.c.waba_id,
                ).join(
                    organization_packages, organization_packages.c.id == deduction_requests.c.organization_package_id
                )
            )
        )
    charged = [row for row in rows if row.unique_code.startswith("c-")]
    assert sorted(row.unique_code for row in charged) == sorted(f"c-{i}" for i in range(150))
    assert all(row.closed_at is None or row.closed_at > row.created_at for row in charged)
    # Both sides were exercised: some landed on the old packages, some on the pool.
    assert {row.waba_id is None for row in charged} == {True, False}
    # A deduction that charged a closed package would have left money on it, missing from the pool.
    async with pg_database.read() as connection:
        closed_ids = (
            await connection.execute(
                select(organization_packages.c.id).where(organization_packages.c.closed_at.is_not(None))
            )
        ).scalars()
        closed = await pool_store.load_packages(connection, V2, list(closed_ids), for_update=False)
    assert len(closed) == 3 and all(p.state.buckets.total == 0 for p in closed.values())
    (pool,) = await packages_of(pg_database, V2)
    assert pool.state.buckets.total == money_before - sum(row.amount_minor for row in charged)
    report = await reconcile(pg_database)
    assert report.ok, report.violations


async def test_backfill_all_moves_the_others_past_a_company_refused_for_the_ceiling_and_leaves_it_whole(
    service: BillingService, database: Database
) -> None:
    for company_id in (61, 62, 63):
        await provision_v2(service, company_id)
    # Company 62's packages would sum past the ceiling on money (as a v2 company of old could hold).
    async with database.transaction() as connection:
        await connection.execute(
            update(quota_buckets)
            .where((quota_buckets.c.company_id == 62) & (quota_buckets.c.quota_type == "additional"))
            .values(balance_minor=AMOUNT_MAX_MINOR // 2)
        )
    untouched = await company_rows(database, [62])
    refused: list[tuple[int, BillingError]] = []

    plans = await backfill_service.backfill_all(
        service.context, [61, 62, 63], on_refused=lambda company_id, error: refused.append((company_id, error))
    )

    assert [plan.company_id for plan in plans] == [61, 63]
    assert [(company_id, error.code) for company_id, error in refused] == [(62, Rejection.AMOUNT_TOO_LARGE)]
    assert await company_rows(database, [62]) == untouched
    assert await backfill_service.companies_to_move(service.context) == [62]
    with pytest.raises(BillingError):  # without a listener the refusal is raised, as before
        await backfill_service.backfill_all(service.context, [62])
