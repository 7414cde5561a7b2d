"""Spending caps against a small reference model, step by step, on SQLite and on PostgreSQL.

Hypothesis drives one company's pool and three WABAs through deductions and
batches of mixed categories, refunds, cap changes (set, raised, lowered under
the spend, narrowed to some categories, removed), top-ups and the clock
crossing cycle boundaries. The model is written from rule 3.11 with plain
ints: it recomputes each WABA's capped spend from scratch (the cycle's
deductions it has not seen refunded, in the categories the cap covers now)
and does not import the engine's domain rules. After every step: the engine
answered each deduction as the model says (a cap never passed, no refusal
the model allows, the pool's own `quota_exceeded` unchanged), the balance
and each WABA's `cap_spent` equal the model's, the cap events are at most one
per WABA, kind and cycle and present exactly where the model saw their
cause, and `reconcile` passes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from tests.conftest import FakeClock, service_for, truncate_all
from wabapool.domain.caps import SpendCap
from wabapool.domain.errors import BillingError
from wabapool.service import CompanyTerms, DeductionRequest, PackageTerms, RefundRequest
from wabapool.service.reconcile import reconcile
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade
from wabapool.storage.tables import outbox_events

DEEP_EXAMPLES = int(os.environ.get("WABAPOOL_STATEFUL_EXAMPLES", "0"))
SQLITE_SETTINGS = settings(
    max_examples=DEEP_EXAMPLES or 25,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
POSTGRES_SETTINGS = settings(
    max_examples=DEEP_EXAMPLES or 8,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

COMPANY = 2401
WABAS = ("240100000000001", "240100000000002", "240100000000003")
START = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)
ALLOWANCE = 200
POSTPAID_LIMIT = 100
# Category → (deduction code, unit price); service messages are free.
CATEGORIES = {"marketing": ("wa_marketing_id", 7), "utility": ("wa_utility_id", 3), "service": ("wa_service_id", 0)}
CATEGORY_NAMES = (*CATEGORIES, None)  # None: a message that names no category (it counts against every cap)
QUANTITIES = (1, 2, 3, 5, 8)


@dataclass
class ModelDeduction:
    code: str
    waba_id: str
    category: str | None
    amount: int
    taken: list[tuple[str, int]]  # (bucket, amount) in the order taken
    cycle: int
    refunded: bool = False


@dataclass
class ModelCap:
    amount: int
    categories: frozenset[str] | None
    warn_percent: int

    def covers(self, category: str | None) -> bool:
        return self.categories is None or category is None or category in self.categories


class CapMachine(RuleBasedStateMachine):
    backend: str = "sqlite"
    url: str = ""
    _databases = itertools.count()
    steps_run: Counter[str] = Counter()

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.sqlite_copy: Path | None = None
        self.database = Database(self._fresh_url())
        if self.backend == "postgres":
            self.run(truncate_all(self.database))
        self.clock = FakeClock(START)
        self.service = service_for(self.database, clock=self.clock)
        self.codes = itertools.count()
        # The pool, bucket by bucket.
        self.initial = ALLOWANCE
        self.additional = 0
        self.postpaid_used = 0
        self.cycle = 0  # months since START's month (UTC, anchor day 1)
        self.deductions: list[ModelDeduction] = []
        self.caps: dict[str, ModelCap] = {}
        self.spent_when_capped: dict[str, int] = {}  # a cap lowered under the spend moves no money
        self.expected_events: set[tuple[str, str, int]] = set()  # (type, waba, cycle)

    def _fresh_url(self) -> str:
        if self.backend == "sqlite":
            template = Path(self.url)
            self.sqlite_copy = template.with_name(f"caps-{next(self._databases)}.db")
            shutil.copyfile(template, self.sqlite_copy)
            return f"sqlite:///{self.sqlite_copy}"
        return self.url

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.database.dispose())
        self.loop.close()
        if self.sqlite_copy is not None:
            for path in self.sqlite_copy.parent.glob(f"{self.sqlite_copy.name}*"):
                path.unlink()

    # -- the model's rules ------------------------------------------------------

    @property
    def available(self) -> int:
        return self.initial + self.additional + POSTPAID_LIMIT - self.postpaid_used

    def capped_spent(self, waba_id: str) -> int:
        cap = self.caps[waba_id]
        return sum(
            d.amount
            for d in self.deductions
            if d.waba_id == waba_id and d.cycle == self.cycle and not d.refunded and cap.covers(d.category)
        )

    def expect(self, waba_id: str, category: str | None, amount: int) -> str:
        """What the engine must answer: applied, waba_cap_exceeded or quota_exceeded (the cap is checked first)."""
        cap = self.caps.get(waba_id)
        if amount and cap is not None and cap.covers(category) and self.capped_spent(waba_id) + amount > cap.amount:
            self.expected_events.add(("waba_cap_reached", waba_id, self.cycle))
            return "waba_cap_exceeded"
        if amount > self.available:
            return "quota_exceeded"
        return "applied"

    def take(self, code: str, waba_id: str, category: str | None, amount: int) -> None:
        taken = []
        rest = amount
        for bucket in ("initial", "additional"):
            part = min(rest, getattr(self, bucket))
            if part:
                setattr(self, bucket, getattr(self, bucket) - part)
                taken.append((bucket, part))
                rest -= part
        if rest:
            self.postpaid_used += rest
            taken.append(("postpaid", rest))
        self.deductions.append(ModelDeduction(code, waba_id, category, amount, taken, self.cycle))
        cap = self.caps.get(waba_id)
        if amount and cap is not None and cap.covers(category):
            spent = self.capped_spent(waba_id)
            if spent * 100 >= cap.warn_percent * cap.amount:
                self.expected_events.add(("waba_cap_warning", waba_id, self.cycle))
            if spent >= cap.amount:
                self.expected_events.add(("waba_cap_reached", waba_id, self.cycle))

    def request(self, waba_id: str, category: str | None, quantity: int) -> DeductionRequest:
        code, _ = CATEGORIES[category or "marketing"]
        return DeductionRequest(
            company_id=COMPANY,
            billing_code="whatsapp",
            deduction_code=code,
            unique_code=f"c{next(self.codes)}",
            quantity=quantity,
            waba_id=waba_id,
            category=category,
        )

    @staticmethod
    def price(category: str | None) -> int:
        return CATEGORIES[category or "marketing"][1]

    # -- rules -----------------------------------------------------------------

    @initialize()
    def provision(self) -> None:
        async def setup() -> None:
            terms = PackageTerms(allowance=ALLOWANCE, postpaid_limit=POSTPAID_LIMIT, cycle_anchor_day=1)
            await self.service.provision_company(
                COMPANY, CompanyTerms(billing_version="v3", timezone="UTC", package=terms)
            )
            for waba_id in WABAS:
                await self.service.provision_waba(COMPANY, waba_id, name=waba_id[-1])
            for code, price in CATEGORIES.values():
                await self.service.set_price(
                    code, unit_price_minor=price, effective_from=datetime(2025, 7, 1, tzinfo=UTC)
                )

        self.run(setup())

    @rule(waba=st.sampled_from(WABAS), category=st.sampled_from(CATEGORY_NAMES), quantity=st.sampled_from(QUANTITIES))
    def deduct(self, waba: str, category: str | None, quantity: int) -> None:
        self.steps_run["deduct"] += 1
        request = self.request(waba, category, quantity)
        expected = self.expect(waba, category, quantity * self.price(category))
        try:
            self.run(self.service.deduct(request))
            outcome = "applied"
        except BillingError as error:
            outcome = error.code.value
        assert outcome == expected, (request, outcome, expected)
        if outcome == "applied":
            self.take(request.unique_code, waba, category, quantity * self.price(category))

    @rule(
        items=st.lists(
            st.tuples(st.sampled_from(WABAS), st.sampled_from(CATEGORY_NAMES), st.sampled_from(QUANTITIES)),
            min_size=2,
            max_size=12,
        )
    )
    def deduct_batch(self, items: list[tuple[str, str | None, int]]) -> None:
        self.steps_run["batch"] += 1
        requests = [self.request(*item) for item in items]
        results = self.run(self.service.deduct_batch(requests))
        for request, result in zip(requests, results, strict=True):
            amount = request.quantity * self.price(request.category)
            expected = self.expect(request.waba_id, request.category, amount)
            outcome = result.status if result.status == "applied" else result.error.code.value
            assert outcome == expected, (request, outcome, expected)
            if outcome == "applied":
                self.take(request.unique_code, request.waba_id, request.category, amount)

    @precondition(lambda self: any(not d.refunded for d in self.deductions))
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        self.steps_run["refund"] += 1
        open_ones = [d for d in self.deductions if not d.refunded]
        deduction = data.draw(st.sampled_from(open_ones))
        self.run(self.service.refund(RefundRequest(COMPANY, deduction.code, f"r-{deduction.code}", "failed")))
        deduction.refunded = True
        for bucket, part in reversed(deduction.taken):
            if bucket == "postpaid":
                self.postpaid_used -= part
            elif bucket == "initial" and deduction.cycle == self.cycle:
                self.initial += part
            else:
                self.additional += part

    @rule(
        waba=st.sampled_from(WABAS),
        amount=st.integers(min_value=0, max_value=120),
        categories=st.none() | st.sets(st.sampled_from(("marketing", "utility", "service")), min_size=1),
        warn_percent=st.sampled_from((80, 50, 100, 1)),
    )
    def set_cap(self, waba: str, amount: int, categories: set[str] | None, warn_percent: int) -> None:
        self.steps_run["set_cap"] += 1
        chosen = None if categories is None else frozenset(categories)
        result = self.run(
            self.service.set_spend_cap(COMPANY, waba, SpendCap(amount, chosen, warn_percent), changed_by="test")
        )
        self.caps[waba] = ModelCap(amount, chosen, warn_percent)
        self.spent_when_capped[waba] = self.capped_spent(waba)
        assert result.cap_spent == self.capped_spent(waba)

    @rule(waba=st.sampled_from(WABAS))
    def remove_cap(self, waba: str) -> None:
        self.steps_run["remove_cap"] += 1
        self.run(self.service.set_spend_cap(COMPANY, waba, None, changed_by="test"))
        self.caps.pop(waba, None)

    @rule(amount=st.integers(min_value=1, max_value=150))
    def top_up(self, amount: int) -> None:
        self.steps_run["top_up"] += 1
        self.run(self.service.top_up(COMPANY, amount=amount, payment_reference=f"p{next(self.codes)}"))
        paid_off = min(amount, self.postpaid_used)
        self.postpaid_used -= paid_off
        self.additional += amount - paid_off

    @rule(by_worker=st.booleans())
    def next_cycle(self, by_worker: bool) -> None:
        """The clock crosses the next boundary; the worker resets, or the next change catches up itself."""
        self.steps_run["next_cycle"] += 1
        self.clock.now = _month_start(START, self.cycle + 1) + timedelta(hours=1)
        self.cycle += 1
        self.initial = ALLOWANCE
        if by_worker:
            self.run(self.service.reset_cycles())

    # -- what must hold after every step -----------------------------------------

    @invariant()
    def no_capped_spend_passes_its_cap(self) -> None:
        """Past the cap only by what was spent before the cap was lowered under it, never by a new deduction."""
        for waba_id, cap in self.caps.items():
            spent = self.capped_spent(waba_id)
            assert spent <= max(cap.amount, self.spent_when_capped.get(waba_id, 0))

    @invariant()
    def balance_and_capped_spend_match_the_model(self) -> None:
        view = self.run(self.service.balance(COMPANY))
        assert (view.available, view.total) == (self.available, self.available - POSTPAID_LIMIT)
        for waba in view.wabas:
            cap = self.caps.get(waba.waba_id)
            if cap is None:
                assert waba.spend_cap is None and waba.cap_spent is None
                continue
            assert waba.spend_cap == SpendCap(cap.amount, cap.categories, cap.warn_percent)
            assert waba.cap_spent == self.capped_spent(waba.waba_id)

    @invariant()
    def cap_events_are_once_per_waba_and_cycle_and_where_the_model_saw_them(self) -> None:
        async def rows() -> list[Any]:
            async with self.database.read() as connection:
                query = select(outbox_events.c.event_type, outbox_events.c.payload).where(
                    outbox_events.c.event_type.in_(("waba_cap_warning", "waba_cap_reached"))
                )
                return list(await connection.execute(query))

        seen = Counter(
            (row.event_type, row.payload["waba_id"], _cycle_of(row.payload["cycle"])) for row in self.run(rows())
        )
        assert all(count == 1 for count in seen.values()), seen
        assert set(seen) == self.expected_events

    @invariant()
    def reconcile_passes(self) -> None:
        report = self.run(reconcile(self.database))
        assert report.ok, report.violations


def _month_start(start: datetime, months: int) -> datetime:
    year, month = divmod(start.month - 1 + months, 12)
    return datetime(start.year + year, month + 1, 1, tzinfo=UTC)


def _cycle_of(label: str) -> int:
    """A cycle's label (its local start date) as months since START's."""
    year, month, _ = (int(part) for part in label.split("-"))
    return (year - START.year) * 12 + month - START.month


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("caps-stateful") / "template.db"
    upgrade(f"sqlite:///{path}")
    return str(path)


def _run(backend: str, url: str, machine_settings: settings) -> None:
    machine = type(f"CapMachine_{backend}", (CapMachine,), {"backend": backend, "url": url})
    run_state_machine_as_test(machine, settings=machine_settings)
    steps = dict(sorted(CapMachine.steps_run.items()))
    print(f"\n[{backend}] steps {steps}")
    CapMachine.steps_run.clear()


def test_capped_spend_never_passes_the_cap_and_refuses_only_what_the_model_does_on_sqlite(sqlite_template: str) -> None:
    _run("sqlite", sqlite_template, SQLITE_SETTINGS)


@pytest.mark.postgres
def test_capped_spend_never_passes_the_cap_and_refuses_only_what_the_model_does_on_postgres(postgres_url: str) -> None:
    _run("postgres", postgres_url, POSTGRES_SETTINGS)
