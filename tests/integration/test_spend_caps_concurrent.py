"""Three capped WABAs of one pool charged at once from 4 processes × 16 tasks on PostgreSQL.

Each WABA has a cap of its own (all categories; marketing only; marketing and
utility), and the sends mix categories, so every cap runs out while messages
outside its categories keep flowing. Afterwards: no cap passed by even one
minor unit (and each is spent to the last unit: the refusals were not
early), every refusal is `waba_cap_exceeded` of a covered category, the pool
gave exactly what was applied, reconcile passes, and each WABA has one
`waba_cap_warning` and one `waba_cap_reached` in the cycle.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import service_for
from wabapool.domain.caps import SpendCap
from wabapool.domain.errors import BillingError
from wabapool.service import BillingService, CompanyTerms, DeductionRequest, PackageTerms
from wabapool.service.reconcile import reconcile
from wabapool.storage.database import Database
from wabapool.storage.tables import deduction_requests, outbox_events

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PROCESSES = 4
TASKS_PER_PROCESS = 16
SENDS_PER_PROCESS = 1_500  # 6,000 in all: each capped WABA wants at least twice its cap
BATCH_SIZE = 20
COMPANY_ID = 7024
UNIT_PRICE_MINOR = 10
QUANTITIES = (1, 2, 3)
CODES = {"marketing": "wa_marketing_id", "utility": "wa_utility_id", "authentication": "wa_authentication_id"}
# WABA → its cap: amount, categories (None: all).
CAPS = {
    "202400000000001": SpendCap(20_000, None, 50),
    "202400000000002": SpendCap(6_000, frozenset({"marketing"}), 80),
    "202400000000003": SpendCap(10_000, frozenset({"marketing", "utility"}), 90),
}
ALLOWANCE_MINOR = 10_000_000  # the pool never runs out: every refusal is a cap's
NOW = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)
START_TIMEOUT_SECONDS = 180
RUN_TIMEOUT_SECONDS = 240


def _fixed_clock() -> datetime:
    return NOW


@dataclass(frozen=True, slots=True)
class Send:
    unique_code: str
    quantity: int
    waba_id: str
    category: str

    def request(self) -> DeductionRequest:
        return DeductionRequest(
            company_id=COMPANY_ID,
            billing_code="wa",
            deduction_code=CODES[self.category],
            unique_code=self.unique_code,
            quantity=self.quantity,
            waba_id=self.waba_id,
            category=self.category,
        )


def build_plans(seed: int = 24) -> list[list[Send]]:
    rng = random.Random(seed)
    return [
        [
            Send(f"p{p}-{n}", rng.choice(QUANTITIES), rng.choice(list(CAPS)), rng.choice(list(CODES)))
            for n in range(SENDS_PER_PROCESS)
        ]
        for p in range(PROCESSES)
    ]


async def _send(service: BillingService, plan: list[Send], mode: str, outcomes: list[tuple[Any, ...]]) -> None:
    while plan:
        chunk = [plan.pop() for _ in range(min(1 if mode == "single" else BATCH_SIZE, len(plan)))]
        try:
            results = await service.deduct_batch([send.request() for send in chunk], service_name="caps-load")
        except Exception as error:  # recorded; the parent asserts there are none
            outcomes.extend((send, "error", repr(error)) for send in chunk)
            continue
        for send, item in zip(chunk, results, strict=True):
            code = item.error.code.value if isinstance(item.error, BillingError) else None
            outcomes.append((send, item.status, code))


async def _run_sender(url: str, plan: list[Send], mode: str, ready: Any, go: Any) -> list[tuple[Any, ...]]:
    database = Database(url)
    service = service_for(database, clock=_fixed_clock)
    try:

        async def warm_up() -> None:
            async with database.read() as connection:
                await connection.exec_driver_sql("SELECT 1")

        await asyncio.gather(*(warm_up() for _ in range(TASKS_PER_PROCESS)))
        pending = list(reversed(plan))
        outcomes: list[tuple[Any, ...]] = []
        ready.put(True)
        if not go.wait(timeout=START_TIMEOUT_SECONDS + 30):
            raise TimeoutError("the parent never gave the start signal")
        await asyncio.gather(*(_send(service, pending, mode, outcomes) for _ in range(TASKS_PER_PROCESS)))
        return outcomes
    finally:
        await database.dispose()


def sender_process(url: str, plan: list[Send], mode: str, ready: Any, go: Any, results: Any) -> None:
    try:
        results.put((asyncio.run(_run_sender(url, plan, mode, ready, go)), None))
    except BaseException as error:  # reported to the parent, which fails the test with it
        ready.put(False)
        results.put(([], repr(error)))


async def _provision(url: str) -> None:
    from tests.conftest import truncate_all

    database = Database(url)
    try:
        await truncate_all(database)
        service = service_for(database, clock=_fixed_clock)
        await service.provision_company(COMPANY_ID, CompanyTerms(package=PackageTerms(allowance=ALLOWANCE_MINOR)))
        for number, (waba_id, cap) in enumerate(CAPS.items(), start=1):
            await service.provision_waba(COMPANY_ID, waba_id, name=f"Capped {number}", spend_cap=cap)
        for code in CODES.values():
            await service.set_price(
                code, unit_price_minor=UNIT_PRICE_MINOR, effective_from=datetime(2025, 7, 1, tzinfo=UTC)
            )
    finally:
        await database.dispose()


async def _read_back(url: str) -> tuple[dict[tuple[str, str], int], Counter[tuple[str, str]], Any, Any]:
    database = Database(url)
    try:
        async with database.read() as connection:
            d = deduction_requests.c
            rows = await connection.execute(
                select(d.waba_id, d.category, func.sum(d.amount_minor)).group_by(d.waba_id, d.category)
            )
            spent = {(row[0], row[1]): int(row[2]) for row in rows}
            events = await connection.execute(
                select(outbox_events.c.event_type, outbox_events.c.payload).where(
                    outbox_events.c.event_type.in_(("waba_cap_warning", "waba_cap_reached"))
                )
            )
            counted = Counter((row.event_type, row.payload["waba_id"]) for row in events)
        view = await service_for(database, clock=_fixed_clock).balance(COMPANY_ID)
        return spent, counted, view, await reconcile(database)
    finally:
        await database.dispose()


def _run(url: str, plans: list[list[Send]], mode: str) -> list[tuple[Any, ...]]:
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Queue(), context.Event(), context.Queue()
    processes = [
        context.Process(target=sender_process, args=(url, plans[i], mode, ready, go, results), daemon=True)
        for i in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        try:
            for _ in processes:
                ready.get(timeout=START_TIMEOUT_SECONDS)
        except queue.Empty:
            raise AssertionError(f"a sender never started (exit codes {[p.exitcode for p in processes]})") from None
        go.set()
        collected = [results.get(timeout=RUN_TIMEOUT_SECONDS) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    failures = [error for _, error in collected if error]
    assert not failures, failures
    return [outcome for outcomes, _ in collected for outcome in outcomes]


@pytest.mark.parametrize("mode", ["single", "batch"])
def test_concurrent_senders_never_pass_a_waba_cap_and_raise_its_events_once(postgres_url: str, mode: str) -> None:
    plans = build_plans()
    asyncio.run(_provision(postgres_url))
    outcomes = _run(postgres_url, plans, mode)
    spent, events, view, report = asyncio.run(_read_back(postgres_url))

    assert len(outcomes) == PROCESSES * SENDS_PER_PROCESS
    assert not [o for o in outcomes if o[1] == "error"], [o for o in outcomes if o[1] == "error"][:5]
    refused = [send for send, status, _ in outcomes if status == "rejected"]
    assert {code for _, status, code in outcomes if status == "rejected"} == {"waba_cap_exceeded"}
    # Only capped categories are refused; the others all went through.
    assert all(CAPS[send.waba_id].covers(send.category) for send in refused)
    applied = [send for send, status, _ in outcomes if status == "applied"]
    by_waba = {w: {c: spent.get((w, c), 0) for c in CODES} for w in CAPS}
    for waba_id, cap in CAPS.items():
        capped = sum(amount for category, amount in by_waba[waba_id].items() if cap.covers(category))
        # Not one minor unit past the cap, and spent to the last unit (sends of 10 kept coming after the end).
        assert capped == cap.amount_minor, (waba_id, capped, cap.amount_minor)
        shown = next(w for w in view.wabas if w.waba_id == waba_id)
        assert shown.cap_spent == cap.amount_minor
        assert events[("waba_cap_warning", waba_id)] == 1
        assert events[("waba_cap_reached", waba_id)] == 1
    # The pool is exact: it gave what the applied deductions took.
    applied_minor = sum(send.quantity * UNIT_PRICE_MINOR for send in applied)
    assert applied_minor == sum(spent.values()) == ALLOWANCE_MINOR - view.initial_remaining
    assert report.ok, report.violations
    print(f"\n[{mode}] applied {len(applied)}, refused by caps {len(refused)}, spent per WABA {by_waba}")
