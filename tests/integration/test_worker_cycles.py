"""The monthly reset in the worker: Asia/Jakarta boundaries, anchor day 31 through a leap February, racing workers.

Each cycle is reset exactly once (one `cycle_reset` event, one statement) however many workers race and
whether a deduction at the boundary gets there first; the deduction is charged to the cycle in force at
its time; every statement equals what the ledger says.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from tests.conftest import FakeClock, service_for
from wabapool.service import BillingService, CompanyTerms, DeductionRequest, PackageTerms, RefundRequest
from wabapool.storage.database import Database
from wabapool.storage.tables import cycle_statements, deduction_requests, ledger_entries, outbox_events
from wabapool.worker.cycles import CycleScheduler

JAKARTA = ZoneInfo("Asia/Jakarta")
COMPANY = 3101
IDLE_COMPANY = 3102
WABAS = ("201", "202")


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=JAKARTA).astimezone(UTC)


async def provision(service: BillingService, company_id: int, *, wabas: tuple[str, ...] = WABAS) -> None:
    terms = PackageTerms(allowance=1_000, postpaid_limit=500, cycle_anchor_day=31)
    await service.provision_company(company_id, CompanyTerms(package=terms))
    for waba_id in wabas:
        await service.provision_waba(company_id, f"{company_id}{waba_id}", name=f"WABA {waba_id}")
    await service.set_price("wa_marketing_id", unit_price_minor=10, effective_from=datetime(2025, 7, 1, tzinfo=UTC))


def deduction(company_id: int, code: str, quantity: int, waba: str = WABAS[0]) -> DeductionRequest:
    return DeductionRequest(
        company_id=company_id,
        billing_code="broadcast",
        deduction_code="wa_marketing_id",
        unique_code=code,
        quantity=quantity,
        waba_id=f"{company_id}{waba}",
    )


async def rows(database: Database, table, *where) -> list:  # type: ignore[no-untyped-def]
    async with database.read() as connection:
        return list(await connection.execute(select(table).where(*where).order_by(table.c.id)))


def racer(url: str, at: datetime) -> tuple[CycleScheduler, Database]:
    """A worker of its own (own engine, own service) whose clock reads `at`."""
    database = Database(url)
    return CycleScheduler(service_for(database, clock=FakeClock(at))), database


async def race(url: str, at: datetime, *extra) -> list[dict[int, int]]:  # type: ignore[no-untyped-def]
    schedulers = [racer(url, at) for _ in range(3)]
    try:
        results = await asyncio.gather(*(s.run_due() for s, _ in schedulers), *extra)
    finally:
        for _, database in schedulers:
            await database.dispose()
    return [r for r in results[:3]]


def url_of(database: Database) -> str:
    return database.engine.url.render_as_string(hide_password=False).replace("+aiosqlite", "").replace("+asyncpg", "")


async def assert_statements_equal_the_ledger(database: Database, company_id: int) -> None:
    entries = await rows(database, ledger_entries, ledger_entries.c.company_id == company_id)
    requests = await rows(database, deduction_requests, deduction_requests.c.company_id == company_id)
    statements = await rows(database, cycle_statements, cycle_statements.c.company_id == company_id)
    assert statements
    closing = {"initial": 0, "additional": 0, "postpaid": 0}  # before the pool was provisioned
    for statement in statements:
        active = any(statement.cycle_start <= e.created_at < statement.cycle_end for e in entries)
        if active:
            # The figures at the cycle's end: every bucket as its last entry before the end left it.
            for quota_type in ("initial", "additional", "postpaid"):
                touched = [e for e in entries if e.quota_type == quota_type and e.created_at < statement.cycle_end]
                if touched:
                    closing[quota_type] = max(touched, key=lambda e: (e.created_at, e.id)).bucket_after_minor
        else:
            # A cycle no write ever touched (caught up later in one go): the allowance granted, nothing spent.
            closing["initial"] = statement.allowance_minor
        assert (
            statement.closing_initial_minor,
            statement.closing_additional_minor,
            statement.closing_postpaid_used_minor,
        ) == (closing["initial"], closing["additional"], closing["postpaid"]), statement.cycle_start
        in_cycle = [r for r in requests if r.cycle_start == statement.cycle_start]
        assert statement.deductions_count == len(in_cycle)
        spent: dict[str, int] = {}
        for request in in_cycle:
            spent[request.waba_id] = spent.get(request.waba_id, 0) + request.amount_minor
        assert statement.spent_by_waba == {w: a for w, a in spent.items() if a}
        assert statement.spent_minor == sum(spent.values())
    for earlier, later in zip(statements, statements[1:], strict=False):
        assert earlier.cycle_end == later.cycle_start
        assert (earlier.closing_additional_minor, earlier.closing_postpaid_used_minor) == (
            later.opening_additional_minor,
            later.opening_postpaid_used_minor,
        )
        assert later.opening_initial_minor == later.allowance_minor  # the reset granted the allowance again


async def test_racing_workers_reset_each_cycle_once_through_a_leap_february_with_anchor_day_31(
    database: Database,
) -> None:
    clock = FakeClock(local(2028, 1, 15, 10))
    service = service_for(database, clock=clock)
    await provision(service, COMPANY)
    await provision(service, IDLE_COMPANY, wabas=("209",))
    for index, (quantity, waba) in enumerate(((30, WABAS[0]), (25, WABAS[1]), (80, WABAS[0]))):
        clock.advance(hours=1)
        await service.deduct(deduction(COMPANY, f"jan-{index}", quantity, waba))
    clock.now = local(2028, 1, 30, 23, 59, 59)  # one second to midnight of the 31st, Jakarta
    await service.deduct(deduction(COMPANY, "just-before", 1))

    boundary = local(2028, 1, 31)
    at_boundary = service_for(Database(url_of(database)), clock=FakeClock(boundary))
    results = await race(
        url_of(database), boundary + timedelta(seconds=1), at_boundary.deduct(deduction(COMPANY, "at-boundary", 7))
    )
    await at_boundary.database.dispose()
    assert sum(r.get(IDLE_COMPANY, 0) for r in results) == 1
    assert sum(r.get(COMPANY, 0) for r in results) <= 1  # 0 when the deduction reset the pool first

    clock.now = boundary + timedelta(days=2)
    await service.deduct(deduction(COMPANY, "feb-1", 12, WABAS[1]))
    # No worker runs through February's end and March's: the next one catches up both cycles.
    results = await race(url_of(database), local(2028, 4, 1, 8))
    assert sum(r.get(COMPANY, 0) for r in results) == 2 and sum(r.get(IDLE_COMPANY, 0) for r in results) == 2
    assert await race(url_of(database), local(2028, 4, 1, 9)) == [{}, {}, {}]  # a restart finds nothing to do

    for company_id in (COMPANY, IDLE_COMPANY):
        resets = await rows(
            database,
            outbox_events,
            outbox_events.c.company_id == company_id,
            outbox_events.c.event_type == "cycle_reset",
        )
        assert [event.payload["cycle"] for event in resets] == ["2028-01-31", "2028-02-29", "2028-03-31"]
        statements = await rows(database, cycle_statements, cycle_statements.c.company_id == company_id)
        assert [(s.cycle_start, s.cycle_end) for s in statements] == [
            (local(2027, 12, 31), local(2028, 1, 31)),
            (local(2028, 1, 31), local(2028, 2, 29)),
            (local(2028, 2, 29), local(2028, 3, 31)),
        ]
        await assert_statements_equal_the_ledger(database, company_id)

    requests = {r.unique_code: r for r in await rows(database, deduction_requests)}
    assert requests["just-before"].cycle_start == local(2027, 12, 31)
    assert requests["at-boundary"].cycle_start == boundary
    first, february, march = await rows(database, cycle_statements, cycle_statements.c.company_id == COMPANY)
    assert first.deductions_count == 4 and first.spent_minor == 1_360
    assert first.opening_initial_minor == 1_000 and first.closing_initial_minor == 0  # 1000 allowance, 1360 spent
    assert first.closing_additional_minor == 0 and first.closing_postpaid_used_minor == 360
    assert february.deductions_count == 2 and february.spent_minor == 190
    assert february.opening_initial_minor == 1_000 and february.closing_initial_minor == 810
    assert march.deductions_count == 0 and march.opening_initial_minor == march.closing_initial_minor == 1_000


async def test_a_deduction_after_the_boundary_resets_lazily_and_writes_the_statement_in_its_transaction(
    database: Database,
) -> None:
    clock = FakeClock(local(2028, 2, 10))
    service = service_for(database, clock=clock)
    await provision(service, COMPANY)
    await service.deduct(deduction(COMPANY, "feb", 5))
    clock.now = local(2028, 2, 29, 0, 0, 1)  # the leap day: a cycle starts (anchor 31 → the month's last day)
    result = await service.deduct(deduction(COMPANY, "leap-day", 3))
    assert result.value_before == 1_000  # charged to the new cycle, after its reset
    (statement,) = await rows(database, cycle_statements)
    assert (statement.cycle_start, statement.cycle_end) == (local(2028, 1, 31), local(2028, 2, 29))
    assert statement.spent_minor == 50 and statement.closing_initial_minor == 950
    # The worker, arriving later, finds the cycle already reset and writes nothing twice.
    assert await CycleScheduler(service_for(database, clock=FakeClock(local(2028, 2, 29, 1)))).run_due() == {}
    assert len(await rows(database, cycle_statements)) == 1
    assert len(await rows(database, outbox_events, outbox_events.c.event_type == "cycle_reset")) == 1


async def test_a_refund_after_the_boundary_closes_the_cycle_too(database: Database) -> None:
    clock = FakeClock(local(2028, 3, 5))
    service = service_for(database, clock=clock)
    await provision(service, COMPANY)
    await service.deduct(deduction(COMPANY, "mar", 20))
    clock.now = local(2028, 3, 31, 9)
    await service.refund(RefundRequest(company_id=COMPANY, unique_code="mar", refund_code="r-1", reason="failed"))
    (statement,) = await rows(database, cycle_statements)
    assert statement.cycle_end == local(2028, 3, 31) and statement.spent_minor == 200
    await assert_statements_equal_the_ledger(database, COMPANY)


async def test_the_scheduler_does_nothing_while_no_cycle_has_ended(database: Database) -> None:
    clock = FakeClock(local(2028, 1, 15))
    service = service_for(database, clock=clock)
    await provision(service, COMPANY)
    clock.now = local(2028, 1, 30, 23, 59, 59)  # one second before the cycle ends
    assert await CycleScheduler(service).run_due() == {}
    assert await rows(database, cycle_statements) == []
