"""Many processes, many tasks, one pool on PostgreSQL: no lost update, no double spend, no overdraft.

4 processes × 16 asyncio tasks send 20,000 deductions at one pool. One send in
ten repeats a unique_code that another process sends at the same position of
its plan, so both arrive at about the same moment. The pool is sized so the
run drains `initial`, then `additional`, goes into `postpaid` up to its limit,
and then has to refuse with `quota_exceeded`. Afterwards the database must
show every code applied at most once, nothing written for a refusal, postpaid
within its limit, one `balance_below_zero` event, money conserved, and a clean
reconcile.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import service_for
from wabapool.domain.errors import BillingError
from wabapool.service import BillingService, CompanyTerms, DeductionRequest, PackageTerms
from wabapool.service.reconcile import reconcile
from wabapool.storage.database import Database
from wabapool.storage.tables import deduction_requests, ledger_entries, outbox_events

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PROCESSES = 4
TASKS_PER_PROCESS = 16
SENDS_PER_PROCESS = 5_000  # 20,000 in all
# At every fifth position of the plan, process 1 repeats process 0's code and
# process 3 repeats process 2's: 2 of 4 sends at 1 of 5 positions = 10 %.
DUPLICATE_EVERY = 5
BATCH_SIZE = 50

COMPANY_ID = 7001
WABA_IDS = ("201000000000001", "201000000000002", "201000000000003")
UNIT_PRICE_MINOR = 10
QUANTITIES = (1, 2, 3)  # 10–30 a send, about 20 on average: 18,000 codes want about 360,000
ALLOWANCE_MINOR = 120_000
TOP_UP_MINOR = 40_000
POSTPAID_LIMIT_MINOR = 40_000  # 200,000 can be spent: the pool runs dry a bit past half way
RUN_TIMEOUT_SECONDS = 240
# How long the parent waits for every sender to connect and warm up (seconds under a loaded CI machine).
START_TIMEOUT_SECONDS = 180

# A fixed instant mid-cycle: a real clock could cross a cycle start during the run.
NOW = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)


def _fixed_clock() -> datetime:
    return NOW


@dataclass(frozen=True, slots=True)
class Send:
    unique_code: str
    quantity: int
    waba_id: str

    def request(self) -> DeductionRequest:
        return DeductionRequest(
            company_id=COMPANY_ID,
            billing_code="wa",
            deduction_code="wa_marketing_id",
            unique_code=self.unique_code,
            quantity=self.quantity,
            waba_id=self.waba_id,
        )


def build_plans(seed: int = 20_000) -> list[list[Send]]:
    """One ordered list of sends per process; duplicates share the position of their twin."""
    rng = random.Random(seed)
    plans: list[list[Send]] = [[] for _ in range(PROCESSES)]
    for position in range(SENDS_PER_PROCESS):
        own = [
            Send(f"p{p}-{position}", rng.choice(QUANTITIES), WABA_IDS[rng.randrange(len(WABA_IDS))])
            for p in range(PROCESSES)
        ]
        for p in range(PROCESSES):
            duplicate = position % DUPLICATE_EVERY == 0 and p % 2 == 1
            plans[p].append(own[p - 1] if duplicate else own[p])
    return plans


# -- the sending side (runs in spawned processes) -------------------------------


def _outcome(send: Send, result: Any = None, error: BaseException | None = None) -> tuple[Any, ...]:
    if isinstance(error, BillingError):
        return (send.unique_code, "rejected", error.code.value, None, None)
    if error is not None:
        return (send.unique_code, "error", repr(error), None, None)
    status = "replayed" if result.replayed else "applied"
    return (send.unique_code, status, None, result.deduction_id, result.amount)


async def _send_single(service: BillingService, queue: list[Send], outcomes: list[tuple[Any, ...]]) -> None:
    while queue:
        send = queue.pop()
        try:
            result = await service.deduct(send.request(), service_name="load-test")
        except Exception as error:  # every outcome is recorded; the parent asserts there are no errors
            outcomes.append(_outcome(send, error=error))
        else:
            outcomes.append(_outcome(send, result))


async def _send_batches(service: BillingService, queue: list[Send], outcomes: list[tuple[Any, ...]]) -> None:
    while queue:
        chunk = [queue.pop() for _ in range(min(BATCH_SIZE, len(queue)))]
        try:
            results = await service.deduct_batch([s.request() for s in chunk], service_name="load-test")
        except Exception as error:
            outcomes.extend(_outcome(send, error=error) for send in chunk)
            continue
        for send, item in zip(chunk, results, strict=True):
            outcomes.append(_outcome(send, item.result, item.error))


async def _run_sender(
    url: str, plan: list[Send], mode: str, ready: Any, go: Any, index: int
) -> tuple[list[tuple[Any, ...]], float]:
    database = Database(url)
    service = service_for(database, clock=_fixed_clock)
    try:

        async def warm_up() -> None:
            async with database.read() as connection:
                await connection.exec_driver_sql("SELECT 1")

        await asyncio.gather(*(warm_up() for _ in range(TASKS_PER_PROCESS)))
        queue = list(reversed(plan))  # pop() from the end takes the plan in order
        outcomes: list[tuple[Any, ...]] = []
        worker = _send_single if mode == "single" else _send_batches
        ready.put(index)
        if not go.wait(timeout=START_TIMEOUT_SECONDS + 30):
            raise TimeoutError("the parent never gave the start signal")
        started = time.perf_counter()
        await asyncio.gather(*(worker(service, queue, outcomes) for _ in range(TASKS_PER_PROCESS)))
        return outcomes, time.perf_counter() - started
    finally:
        await database.dispose()


def sender_process(url: str, plan: list[Send], mode: str, ready: Any, go: Any, results: Any, index: int) -> None:
    """One sender process; its own error, whatever it is, reaches the parent as its result."""
    try:
        outcomes, elapsed = asyncio.run(_run_sender(url, plan, mode, ready, go, index))
        results.put((index, outcomes, elapsed, None))
    except BaseException as error:  # reported to the parent, which fails the test with it
        ready.put(index)  # never leave the parent waiting for this sender
        results.put((index, [], 0.0, repr(error)))


# -- the checking side ----------------------------------------------------------


async def _provision(url: str) -> None:
    from tests.conftest import truncate_all

    database = Database(url)
    try:
        await truncate_all(database)
        service = service_for(database, clock=_fixed_clock)
        await service.provision_company(
            COMPANY_ID,
            CompanyTerms(package=PackageTerms(allowance=ALLOWANCE_MINOR, postpaid_limit=POSTPAID_LIMIT_MINOR)),
        )
        for number, waba_id in enumerate(WABA_IDS, start=1):
            await service.provision_waba(COMPANY_ID, waba_id, name=f"Load WABA {number}")
        await service.set_price(
            "wa_marketing_id", unit_price_minor=UNIT_PRICE_MINOR, effective_from=datetime(2025, 7, 1, tzinfo=UTC)
        )
        await service.top_up(COMPANY_ID, amount=TOP_UP_MINOR, payment_reference="load-top-up")
    finally:
        await database.dispose()


@dataclass(slots=True)
class Stored:
    codes: Counter[str]
    amounts: dict[str, int]
    ledger_references: set[str]
    max_postpaid_used: int
    below_zero_events: int
    balance: Any
    reconcile: Any


async def _read_back(url: str) -> Stored:
    database = Database(url)
    try:
        async with database.read() as connection:
            rows = (
                await connection.execute(select(deduction_requests.c.unique_code, deduction_requests.c.amount_minor))
            ).all()
            references = set(
                (
                    await connection.execute(
                        select(ledger_entries.c.reference).where(ledger_entries.c.kind == "deduction")
                    )
                ).scalars()
            )
            max_postpaid = (
                await connection.execute(
                    select(func.max(ledger_entries.c.bucket_after_minor)).where(
                        ledger_entries.c.quota_type == "postpaid"
                    )
                )
            ).scalar_one()
            below_zero = (
                await connection.execute(
                    select(func.count())
                    .select_from(outbox_events)
                    .where(outbox_events.c.event_type == "balance_below_zero")
                )
            ).scalar_one()
        view = await service_for(database, clock=_fixed_clock).balance(COMPANY_ID)
        report = await reconcile(database)
    finally:
        await database.dispose()
    return Stored(
        codes=Counter(row.unique_code for row in rows),
        amounts={row.unique_code: row.amount_minor for row in rows},
        ledger_references=references,
        max_postpaid_used=max_postpaid or 0,
        below_zero_events=below_zero,
        balance=view,
        reconcile=report,
    )


def _run_processes(url: str, plans: list[list[Send]], mode: str) -> tuple[list[tuple[Any, ...]], float, list[float]]:
    context = multiprocessing.get_context("spawn")
    # A ready queue and a start event instead of a barrier: a barrier broken by one sender hid that
    # sender's real error behind BrokenBarrierError in every other process.
    ready, go, results = context.Queue(), context.Event(), context.Queue()
    processes = [
        context.Process(target=sender_process, args=(url, plans[i], mode, ready, go, results, i), daemon=True)
        for i in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        try:
            for _ in processes:  # every sender is connected and warmed up (or has failed and said so)
                ready.get(timeout=START_TIMEOUT_SECONDS)
        except queue.Empty:
            codes = [process.exitcode for process in processes]
            raise AssertionError(f"a sender neither started nor reported an error (exit codes {codes})") from None
        go.set()
        started = time.perf_counter()
        collected = [results.get(timeout=RUN_TIMEOUT_SECONDS) for _ in processes]
        wall_seconds = time.perf_counter() - started
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    failures = [error for _, _, _, error in collected if error]
    assert not failures, failures
    outcomes = [outcome for _, batch, _, _ in collected for outcome in batch]
    return outcomes, wall_seconds, [elapsed for _, _, elapsed, _ in collected]


def _check(plans: list[list[Send]], outcomes: list[tuple[Any, ...]], stored: Stored) -> dict[str, int]:
    sends = [send for plan in plans for send in plan]
    assert len(outcomes) == len(sends) == PROCESSES * SENDS_PER_PROCESS
    errors = [o for o in outcomes if o[1] == "error"]
    assert not errors, errors[:5]
    by_code: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for outcome in outcomes:
        by_code[outcome[0]].append(outcome)
    statuses = Counter(o[1] for o in outcomes)
    rejections = Counter(o[2] for o in outcomes if o[1] == "rejected")
    assert set(rejections) == {"quota_exceeded"}, rejections

    # Every unique_code applied at most once, and its repeats replay the same deduction.
    assert not [code for code, times in stored.codes.items() if times > 1]
    applied_codes = set()
    for code, seen in by_code.items():
        applied = [o for o in seen if o[1] == "applied"]
        assert len(applied) <= 1, seen
        if applied:
            applied_codes.add(code)
            ids = {o[3] for o in seen if o[1] in ("applied", "replayed")}
            assert len(ids) == 1, seen
        else:
            assert all(o[1] == "rejected" for o in seen), seen
    duplicates = sum(len(seen) - 1 for seen in by_code.values())
    assert duplicates == len(sends) // 10

    # Refused codes wrote nothing: no request row, no ledger entry.
    assert set(stored.codes) == applied_codes
    assert stored.ledger_references == applied_codes
    refused = set(by_code) - applied_codes
    assert refused and not (refused & stored.ledger_references)

    # Postpaid never past its limit; the pool ran all the way down.
    view = stored.balance
    assert stored.max_postpaid_used <= POSTPAID_LIMIT_MINOR
    assert view.postpaid_used <= POSTPAID_LIMIT_MINOR
    assert view.initial_remaining == 0 and view.additional_remaining == 0
    assert view.available < min(QUANTITIES) * UNIT_PRICE_MINOR
    assert stored.below_zero_events == 1

    # Money is conserved: what was applied is what the buckets gave.
    applied_minor = sum(stored.amounts.values())
    client_minor = sum(o[4] for o in outcomes if o[1] == "applied")
    consumed = (
        (ALLOWANCE_MINOR - view.initial_remaining) + (TOP_UP_MINOR - view.additional_remaining) + view.postpaid_used
    )
    assert applied_minor == client_minor == consumed
    assert stored.reconcile.ok, stored.reconcile.violations
    assert stored.reconcile.checks["deductions"] == len(applied_codes)
    return {**statuses, "quota_exceeded": rejections["quota_exceeded"], "unique_codes": len(by_code)}


@pytest.mark.parametrize("mode", ["single", "batch"])
def test_concurrent_deductions_apply_once_and_never_overdraw(postgres_url: str, mode: str) -> None:
    plans = build_plans()
    asyncio.run(_provision(postgres_url))
    outcomes, wall_seconds, per_process = _run_processes(postgres_url, plans, mode)
    stored = asyncio.run(_read_back(postgres_url))
    counts = _check(plans, outcomes, stored)
    sends = PROCESSES * SENDS_PER_PROCESS
    print(
        f"\n[{mode}] {sends} deductions from {PROCESSES} processes × {TASKS_PER_PROCESS} tasks "
        f"in {wall_seconds:.2f} s = {sends / wall_seconds:,.0f} deductions/s "
        f"(slowest process {max(per_process):.2f} s); outcomes {counts}"
    )


async def _blocked_lock_reads_committed_buckets(url: str) -> tuple[int, int]:
    from tests.conftest import truncate_all
    from wabapool.storage import pools as pool_store
    from wabapool.storage.tables import quota_buckets

    database = Database(url)
    try:
        await truncate_all(database)
        await _provision_small(database)
        async with database.engine.connect() as holder, database.engine.connect() as waiter:
            await holder.begin()
            held = await pool_store.load_pool(holder, COMPANY_ID, for_update=True)
            assert held is not None
            await holder.execute(
                quota_buckets.update()
                .where(
                    (quota_buckets.c.company_id == held.state.company_id)
                    & (quota_buckets.c.billing_component_id == held.component_id)
                    & (quota_buckets.c.quota_type == "initial")
                )
                .values(balance_minor=quota_buckets.c.balance_minor - 10)
            )
            await waiter.begin()
            waiting = asyncio.ensure_future(pool_store.load_pool(waiter, COMPANY_ID, for_update=True))
            await _until_someone_waits_for_a_lock(database)
            await holder.commit()
            seen = await waiting
            assert seen is not None
            await waiter.rollback()
        return held.state.buckets.initial_remaining, seen.state.buckets.initial_remaining
    finally:
        await database.dispose()


async def _provision_small(database: Database) -> None:
    service = service_for(database, clock=_fixed_clock)
    await service.provision_company(COMPANY_ID, CompanyTerms(package=PackageTerms(allowance=1_000)))


async def _until_someone_waits_for_a_lock(database: Database) -> None:
    for _ in range(500):
        async with database.read() as connection:
            waiting = (
                await connection.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the second transaction never waited for the pool lock")


def test_pool_lock_waiter_reads_the_buckets_its_holder_committed(postgres_url: str) -> None:
    """A transaction that waited for the pool lock must compute from the balance committed meanwhile."""
    before, seen = asyncio.run(_blocked_lock_reads_committed_buckets(postgres_url))
    assert seen == before - 10
