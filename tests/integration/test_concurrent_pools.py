"""Many processes, many tasks, 200 pools on PostgreSQL: groups across pools never deadlock nor overdraw.

4 processes × 16 asyncio tasks send deductions spread over 200 companies'
pools, so every group commit spans many pools and the groups of different
processes lock overlapping sets of pools. One send in ten repeats a code that
another process sends at the same position of its plan. A tenth of the pools
are small: they run through their allowance into postpaid, up to its limit,
then refuse with `quota_exceeded`. Afterwards: every code applied at most once
(its repeats replay it), nothing written for a refusal, no pool past its
postpaid limit, exactly one `balance_below_zero` per exhausted pool in the
cycle, money conserved per pool, a clean reconcile, and no deadlock detected
by the server (`pg_stat_database.deadlocks` unchanged; a deadlock would also
answer `unavailable`, which no send may get).
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
from sqlalchemy import select, text

from tests.conftest import service_for
from wabapool.domain.errors import BillingError
from wabapool.service import BillingService, CompanyTerms, DeductionRequest, PackageTerms
from wabapool.service.reconcile import reconcile
from wabapool.storage.database import Database
from wabapool.storage.tables import deduction_requests, outbox_events

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PROCESSES = 4
TASKS_PER_PROCESS = 16
SENDS_PER_PROCESS = 1_500  # 6,000 in all, about 27 a pool
DUPLICATE_EVERY = 5  # processes 1 and 3 repeat 0's and 2's code at every fifth position: 10 % of sends
BATCH_SIZE = 50  # a batch spans about 45 pools

POOLS = 200
FIRST_COMPANY_ID = 9_000
SMALL_EVERY = 10  # every tenth pool is small and runs dry
UNIT_PRICE_MINOR = 10
QUANTITIES = (1, 2, 3)
SMALL_ALLOWANCE_MINOR = 100
SMALL_POSTPAID_LIMIT_MINOR = 60  # 160 a small pool: about 8 sends of the ~27 it gets, then refusals
LARGE_ALLOWANCE_MINOR = 1_000_000
LARGE_POSTPAID_LIMIT_MINOR = 1_000
RUN_TIMEOUT_SECONDS = 300
START_TIMEOUT_SECONDS = 180

NOW = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)  # mid-cycle: a real clock could cross a cycle start


def _fixed_clock() -> datetime:
    return NOW


def _company(index: int) -> int:
    return FIRST_COMPANY_ID + index


def _small(company_id: int) -> bool:
    return (company_id - FIRST_COMPANY_ID) % SMALL_EVERY == 0


def _waba(company_id: int) -> str:
    return f"{company_id}0001"


@dataclass(frozen=True, slots=True)
class Send:
    company_id: int
    unique_code: str
    quantity: int

    def request(self) -> DeductionRequest:
        return DeductionRequest(
            company_id=self.company_id,
            billing_code="wa",
            deduction_code="wa_marketing_id",
            unique_code=self.unique_code,
            quantity=self.quantity,
            waba_id=_waba(self.company_id),
        )


def build_plans(seed: int = 23_000) -> list[list[Send]]:
    """One ordered list of sends per process; duplicates share the position of their twin."""
    rng = random.Random(seed)
    plans: list[list[Send]] = [[] for _ in range(PROCESSES)]
    for position in range(SENDS_PER_PROCESS):
        own = [
            Send(_company(rng.randrange(POOLS)), f"p{p}-{position}", rng.choice(QUANTITIES)) for p in range(PROCESSES)
        ]
        for p in range(PROCESSES):
            duplicate = position % DUPLICATE_EVERY == 0 and p % 2 == 1
            plans[p].append(own[p - 1] if duplicate else own[p])
    return plans


# -- the sending side (runs in spawned processes) -------------------------------

Outcome = tuple[int, str, str, str | None, int | None, int | None]  # company, code, status, rejection, id, amount


def _outcome(send: Send, result: Any = None, error: BaseException | None = None) -> Outcome:
    if isinstance(error, BillingError):
        return (send.company_id, send.unique_code, "rejected", error.code.value, None, None)
    if error is not None:
        return (send.company_id, send.unique_code, "error", repr(error), None, None)
    status = "replayed" if result.replayed else "applied"
    return (send.company_id, send.unique_code, status, None, result.deduction_id, result.amount)


async def _send_single(service: BillingService, plan: list[Send], outcomes: list[Outcome]) -> None:
    while plan:
        send = plan.pop()
        try:
            result = await service.deduct(send.request(), service_name="spread-test")
        except Exception as error:  # every outcome is recorded; the parent asserts there are no errors
            outcomes.append(_outcome(send, error=error))
        else:
            outcomes.append(_outcome(send, result))


async def _send_batches(service: BillingService, plan: list[Send], outcomes: list[Outcome]) -> None:
    while plan:
        chunk = [plan.pop() for _ in range(min(BATCH_SIZE, len(plan)))]
        try:
            results = await service.deduct_batch([s.request() for s in chunk], service_name="spread-test")
        except Exception as error:
            outcomes.extend(_outcome(send, error=error) for send in chunk)
            continue
        for send, item in zip(chunk, results, strict=True):
            outcomes.append(_outcome(send, item.result, item.error))


async def _run_sender(url: str, plan: list[Send], mode: str, ready: Any, go: Any, index: int) -> list[Outcome]:
    database = Database(url)
    service = service_for(database, clock=_fixed_clock)
    try:

        async def warm_up() -> None:
            async with database.read() as connection:
                await connection.exec_driver_sql("SELECT 1")

        await asyncio.gather(*(warm_up() for _ in range(TASKS_PER_PROCESS)))
        pending = list(reversed(plan))  # pop() from the end takes the plan in order
        outcomes: list[Outcome] = []
        worker = _send_single if mode == "single" else _send_batches
        ready.put(index)
        if not go.wait(timeout=START_TIMEOUT_SECONDS + 30):
            raise TimeoutError("the parent never gave the start signal")
        await asyncio.gather(*(worker(service, pending, outcomes) for _ in range(TASKS_PER_PROCESS)))
        return outcomes
    finally:
        await database.dispose()


def sender_process(url: str, plan: list[Send], mode: str, ready: Any, go: Any, results: Any, index: int) -> None:
    """One sender process; its own error, whatever it is, reaches the parent as its result."""
    try:
        results.put((index, asyncio.run(_run_sender(url, plan, mode, ready, go, index)), None))
    except BaseException as error:  # reported to the parent, which fails the test with it
        ready.put(index)
        results.put((index, [], repr(error)))


def _run_processes(url: str, plans: list[list[Send]], mode: str) -> tuple[list[Outcome], float]:
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Queue(), context.Event(), context.Queue()
    processes = [
        context.Process(target=sender_process, args=(url, plans[i], mode, ready, go, results, i), daemon=True)
        for i in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        try:
            for _ in processes:
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
    failures = [error for _, _, error in collected if error]
    assert not failures, failures
    return [outcome for _, batch, _ in collected for outcome in batch], wall_seconds


# -- the checking side ----------------------------------------------------------


async def _provision(url: str) -> None:
    from tests.conftest import truncate_all

    database = Database(url)
    try:
        await truncate_all(database)
        service = service_for(database, clock=_fixed_clock)
        await service.set_price(
            "wa_marketing_id", unit_price_minor=UNIT_PRICE_MINOR, effective_from=datetime(2025, 7, 1, tzinfo=UTC)
        )
        for index in range(POOLS):
            company_id = _company(index)
            small = _small(company_id)
            terms = PackageTerms(
                allowance=SMALL_ALLOWANCE_MINOR if small else LARGE_ALLOWANCE_MINOR,
                postpaid_limit=SMALL_POSTPAID_LIMIT_MINOR if small else LARGE_POSTPAID_LIMIT_MINOR,
            )
            await service.provision_company(company_id, CompanyTerms(package=terms))
            await service.provision_waba(company_id, _waba(company_id), name="WABA")
    finally:
        await database.dispose()


async def _deadlocks(url: str) -> int:
    database = Database(url)
    try:
        async with database.read() as connection:
            found = await connection.execute(
                text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            )
            return int(found.scalar_one())
    finally:
        await database.dispose()


@dataclass(slots=True)
class Stored:
    codes: Counter[tuple[int, str]]
    spent: dict[int, int]  # the deductions' amounts, per company
    postpaid_used: dict[int, int]
    remaining: dict[int, int]  # initial + additional, per company
    below_zero: Counter[int]
    reconcile: Any


async def _read_back(url: str) -> Stored:
    database = Database(url)
    try:
        async with database.read() as connection:
            d = deduction_requests
            rows = (await connection.execute(select(d.c.company_id, d.c.unique_code, d.c.amount_minor))).all()
            buckets = (
                await connection.execute(
                    text(
                        "SELECT p.company_id, b.quota_type, b.balance_minor FROM quota_buckets b "
                        "JOIN billing_components c ON c.id = b.billing_component_id "
                        "JOIN organization_packages p ON p.id = c.organization_package_id"
                    )
                )
            ).all()
            below_zero = (
                await connection.execute(
                    select(outbox_events.c.company_id).where(outbox_events.c.event_type == "balance_below_zero")
                )
            ).scalars()
            below = Counter(below_zero)
        report = await reconcile(database)
    finally:
        await database.dispose()
    spent: dict[int, int] = defaultdict(int)
    for row in rows:
        spent[row.company_id] += row.amount_minor
    postpaid = {company: balance for company, kind, balance in buckets if kind == "postpaid"}
    remaining: dict[int, int] = defaultdict(int)
    for company, kind, balance in buckets:
        if kind != "postpaid":
            remaining[company] += balance
    return Stored(Counter((row.company_id, row.unique_code) for row in rows), spent, postpaid, remaining, below, report)


def _check(plans: list[list[Send]], outcomes: list[Outcome], stored: Stored) -> Counter[str]:
    sends = [send for plan in plans for send in plan]
    assert len(outcomes) == len(sends)
    statuses = Counter(o[2] for o in outcomes)
    errors = [o for o in outcomes if o[2] == "error"]
    assert not errors, errors[:5]
    rejections = Counter(o[3] for o in outcomes if o[2] == "rejected")
    # No `unavailable`: no deadlock, no lock timeout, no conflict past the unit of work's attempts.
    assert set(rejections) <= {"quota_exceeded"}, rejections

    by_code: dict[tuple[int, str], list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_code[(outcome[0], outcome[1])].append(outcome)
    assert not [key for key, times in stored.codes.items() if times > 1]
    applied_codes = set()
    for key, seen in by_code.items():
        applied = [o for o in seen if o[2] == "applied"]
        assert len(applied) <= 1, seen
        if applied:
            applied_codes.add(key)
            assert len({o[4] for o in seen if o[2] in ("applied", "replayed")}) == 1, seen
        else:
            assert all(o[2] == "rejected" for o in seen), seen
    assert set(stored.codes) == applied_codes  # a refusal wrote nothing

    client_spent: dict[int, int] = defaultdict(int)
    for outcome in outcomes:
        if outcome[2] == "applied":
            client_spent[outcome[0]] += outcome[5] or 0
    exhausted = 0
    for index in range(POOLS):
        company_id = _company(index)
        small = _small(company_id)
        allowance = SMALL_ALLOWANCE_MINOR if small else LARGE_ALLOWANCE_MINOR
        limit = SMALL_POSTPAID_LIMIT_MINOR if small else LARGE_POSTPAID_LIMIT_MINOR
        used = stored.postpaid_used[company_id]
        assert 0 <= used <= limit, company_id
        consumed = allowance - stored.remaining[company_id] + used
        assert stored.spent.get(company_id, 0) == client_spent.get(company_id, 0) == consumed, company_id
        refused = any(o[3] == "quota_exceeded" for o in outcomes if o[0] == company_id)
        if small:
            # Every small pool ran dry: into postpaid, then refusing what no longer fits.
            assert used > 0 and refused, company_id
            assert stored.remaining[company_id] + limit - used < max(QUANTITIES) * UNIT_PRICE_MINOR, company_id
            exhausted += 1
        else:
            assert not refused and used == 0, company_id
        assert stored.below_zero[company_id] == (1 if used > 0 else 0), company_id
    assert exhausted == POOLS // SMALL_EVERY
    assert stored.reconcile.ok, stored.reconcile.violations
    return statuses + rejections


@pytest.mark.parametrize("mode", ["single", "batch"])
def test_groups_across_200_pools_from_4_processes_apply_once_never_overdraw_nor_deadlock(
    postgres_url: str, mode: str
) -> None:
    plans = build_plans()
    asyncio.run(_provision(postgres_url))
    deadlocks_before = asyncio.run(_deadlocks(postgres_url))
    outcomes, wall_seconds = _run_processes(postgres_url, plans, mode)
    stored = asyncio.run(_read_back(postgres_url))
    assert asyncio.run(_deadlocks(postgres_url)) == deadlocks_before
    counts = _check(plans, outcomes, stored)
    print(
        f"\n[{mode}] {len(outcomes)} deductions over {POOLS} pools from {PROCESSES} processes × "
        f"{TASKS_PER_PROCESS} tasks in {wall_seconds:.2f} s = {len(outcomes) / wall_seconds:,.0f}/s; {dict(counts)}"
    )
