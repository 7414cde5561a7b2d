"""The engine against a small reference model, step by step, on SQLite and on PostgreSQL.

Hypothesis drives a state machine through provisioning, deductions (fresh codes,
replays, conflicting repeats), batches with duplicates inside them, refunds,
top-ups, postpaid settlements, price changes and the clock crossing cycle
starts. The reference model below is written from the specification with plain
ints and dicts; it does not import the engine's domain rules. After every step
the engine's balance must equal the model's figures, its outbox must hold the
events the model expects, and `reconcile` must pass.
"""

from __future__ import annotations

import asyncio
import calendar
import itertools
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select

from tests.conftest import FakeClock, truncate_all
from wabapool.domain.errors import BillingError, Rejection
from wabapool.service import (
    BatchItemResult,
    BillingService,
    CompanyTerms,
    DeductionRequest,
    PackageTerms,
    RefundRequest,
)
from wabapool.service.reconcile import reconcile
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade
from wabapool.storage.tables import outbox_events

# Bounded for CI; WABAPOOL_STATEFUL_EXAMPLES raises both for a deeper hunt.
DEEP_EXAMPLES = int(os.environ.get("WABAPOOL_STATEFUL_EXAMPLES", "0"))
SQLITE_SETTINGS = settings(
    max_examples=DEEP_EXAMPLES or 20,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
POSTGRES_SETTINGS = settings(
    max_examples=DEEP_EXAMPLES or 8,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

START = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)  # 10:00 in Jakarta
JAKARTA_OFFSET = timedelta(hours=7)  # Asia/Jakarta has no daylight saving time
PRICE_FROM = datetime(2025, 7, 1, tzinfo=UTC)

V3_COMPANIES = (1001, 1002)
V2_COMPANY = 1003  # a legacy company: no shared pool
UNKNOWN_COMPANY = 1004  # never provisioned
ALL_COMPANIES = (*V3_COMPANIES, V2_COMPANY, UNKNOWN_COMPANY)
WABAS = {
    1001: ("100100000000001", "100100000000002", "100100000000003"),
    1002: ("100200000000001", "100200000000002"),
    V2_COMPANY: ("100300000000001",),
}
STRANGER_WABA = "199900000000001"  # belongs to nobody
DEFAULT_PRICES = {"wa_marketing_id": 9, "wa_utility_id": 4, "wa_service_id": 0}
DEDUCTION_CODES = (*DEFAULT_PRICES, "wa_unpriced_id")

# The first of each is what Hypothesis shrinks towards: a pool that has money.
ALLOWANCES = (120, 50, 300, 0)
POSTPAID_LIMITS = (150, 40, 0)
ANCHOR_DAYS = (1, 10, 31)
THRESHOLDS = (None, Decimal("25.50"), Decimal("80"))
QUANTITIES = (1, 2, 3, 5, 8, 13, 20, 0)  # 0 is not a valid quantity


# -- the reference model --------------------------------------------------------

CycleKey = tuple[int, int]  # (year, month) of the local date the cycle starts in


def _month_before(year: int, month: int) -> CycleKey:
    return (year, month - 1) if month > 1 else (year - 1, 12)


def _month_after(year: int, month: int) -> CycleKey:
    return (year, month + 1) if month < 12 else (year + 1, 1)


def _anchor_in(year: int, month: int, anchor_day: int) -> int:
    return min(anchor_day, calendar.monthrange(year, month)[1])


def cycle_of(at: datetime, anchor_day: int) -> CycleKey:
    """The cycle containing `at`: it starts at local midnight on the anchor day (the month's last if shorter)."""
    local = at.astimezone(UTC) + JAKARTA_OFFSET
    if local.day >= _anchor_in(local.year, local.month, anchor_day):
        return (local.year, local.month)
    return _month_before(local.year, local.month)


def cycle_start_of(key: CycleKey, anchor_day: int) -> datetime:
    year, month = key
    return datetime(year, month, _anchor_in(year, month, anchor_day), tzinfo=UTC) - JAKARTA_OFFSET


@dataclass
class AppliedDeduction:
    payload: tuple[Any, ...]
    waba_id: str
    amount: int
    taken: list[tuple[str, int]]  # (quota_type, amount) in the order taken
    value_before: int
    value_after: int
    cycle: CycleKey
    deduction_id: int = 0


@dataclass
class ModelRefund:
    unique_code: str
    amount: int
    value_before: int
    value_after: int
    credits: list[tuple[str, int]]
    refund_id: int = 0


@dataclass
class ModelPayment:
    amount: int
    value_before: int
    value_after: int
    credits: list[tuple[str, int]]
    payment_id: int = 0


@dataclass
class ModelPool:
    """One company's pool as plain numbers."""

    anchor_day: int
    cycle: CycleKey
    allowance: int
    initial: int
    additional: int = 0
    postpaid_limit: int = 0
    postpaid_used: int = 0
    wabas: set[str] = field(default_factory=set)
    applied: dict[str, AppliedDeduction] = field(default_factory=dict)
    refunds: dict[str, ModelRefund] = field(default_factory=dict)  # by refund_code
    refunded: set[str] = field(default_factory=set)  # unique_codes given back
    payments: dict[tuple[str, str], ModelPayment] = field(default_factory=dict)  # (kind, reference)
    spend: Counter[tuple[CycleKey, str]] = field(default_factory=Counter)
    below_zero_cycles: set[CycleKey] = field(default_factory=set)
    threshold_percent: Decimal | None = None
    funded_this_cycle: int = 0  # allowance granted + additional carried in + top-ups credited
    low_warning_armed: bool = True
    low_warnings: int = 0

    @property
    def is_low(self) -> bool:
        """Prepaid money left is at or under threshold% (NULL = 40) of what was funded this cycle."""
        percent = Decimal(40) if self.threshold_percent is None else self.threshold_percent
        return (self.initial + self.additional) * 100 <= percent * self.funded_this_cycle

    @property
    def total(self) -> int:
        return self.initial + self.additional - self.postpaid_used

    @property
    def available(self) -> int:
        return self.initial + self.additional + self.postpaid_limit - self.postpaid_used

    def catch_up(self, at: datetime) -> None:
        """A new cycle grants the allowance again; what was left of it expires."""
        now = cycle_of(at, self.anchor_day)
        if now != self.cycle:
            self.cycle = now
            self.initial = self.allowance
            self.funded_this_cycle = self.allowance + self.additional
            self.low_warning_armed = True

    def take(self, amount: int) -> list[tuple[str, int]] | None:
        """Initial, then additional, then postpaid up to its limit; None when it does not fit."""
        if amount > self.available:
            return None
        before = self.total
        taken: list[tuple[str, int]] = []
        from_initial = min(amount, self.initial)
        from_additional = min(amount - from_initial, self.additional)
        from_postpaid = amount - from_initial - from_additional
        for quota_type, part in (
            ("initial", from_initial),
            ("additional", from_additional),
            ("postpaid", from_postpaid),
        ):
            if part:
                taken.append((quota_type, part))
        self.initial -= from_initial
        self.additional -= from_additional
        self.postpaid_used += from_postpaid
        if before >= 0 > self.total:
            self.below_zero_cycles.add(self.cycle)
        if amount and self.low_warning_armed and self.is_low:
            self.low_warning_armed = False
            self.low_warnings += 1
        return taken

    def give_back(self, taken: list[tuple[str, int]], taken_in: CycleKey) -> list[tuple[str, int]]:
        """Last taken first; expired allowance and settled postpaid come back as `additional`."""
        credits: list[tuple[str, int]] = []
        for quota_type, part in reversed(taken):
            if quota_type == "initial" and taken_in != self.cycle:
                credits.append(("additional", part))
                self.additional += part
            elif quota_type == "postpaid":
                repaid = min(part, self.postpaid_used)
                if repaid:
                    credits.append(("postpaid", repaid))
                    self.postpaid_used -= repaid
                if part - repaid:
                    credits.append(("additional", part - repaid))
                    self.additional += part - repaid
            else:
                credits.append((quota_type, part))
                if quota_type == "initial":
                    self.initial += part
                else:
                    self.additional += part
        return credits

    def fund(self, amount: int) -> list[tuple[str, int]]:
        """A payment pays off postpaid use first, the rest is `additional` credit."""
        repaid = min(amount, self.postpaid_used)
        self.postpaid_used -= repaid
        self.additional += amount - repaid
        self.funded_this_cycle += amount - repaid
        if not self.is_low:
            self.low_warning_armed = True  # lifted back above the threshold: the next crossing warns again
        return [(q, a) for q, a in (("postpaid", repaid), ("additional", amount - repaid)) if a]


@dataclass(frozen=True)
class Price:
    deduction_code: str
    company_id: int | None
    effective_from: datetime


def resolve_price(prices: dict[Price, int], deduction_code: str, company_id: int, at: datetime) -> int | None:
    """The company's own price beats the default; among those in force, the newest wins."""
    in_force = [
        (key.company_id is not None, key.effective_from, unit)
        for key, unit in prices.items()
        if key.deduction_code == deduction_code and key.effective_from <= at and key.company_id in (None, company_id)
    ]
    return max(in_force)[2] if in_force else None


# -- the machine ----------------------------------------------------------------


def _payload(request: DeductionRequest) -> tuple[Any, ...]:
    return (request.billing_code, request.deduction_code, request.quantity, request.waba_id)


def _portions(allocations: Any) -> list[tuple[str, int]]:
    return [(a.quota_type, a.amount) for a in allocations]


class LedgerMachine(RuleBasedStateMachine):
    """One fresh database per example; every coroutine runs on the machine's own loop."""

    backend: str = "sqlite"
    url: str = ""
    examples_run: Counter[str] = Counter()
    steps_run: Counter[str] = Counter()
    _databases = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.sqlite_copy: Path | None = None
        self.database = Database(self._fresh_url())
        if self.backend == "postgres":
            self.run(truncate_all(self.database))
        self.clock = FakeClock(START)
        self.service = BillingService(self.database, clock=self.clock)
        self.pools: dict[int, ModelPool] = {}
        self.prices: dict[Price, int] = {}
        self.codes = itertools.count()
        self.codes_seen: set[str] = set()
        type(self).examples_run[self.backend] += 1

    def _fresh_url(self) -> str:
        if self.backend == "sqlite":
            template = Path(self.url)
            self.sqlite_copy = template.with_name(f"example-{next(self._databases)}.db")
            shutil.copyfile(template, self.sqlite_copy)
            return f"sqlite:///{self.sqlite_copy}"
        return self.url

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def attempt(self, coroutine: Any) -> tuple[Any, str | None]:
        """(result, None) or (None, rejection code)."""
        try:
            return self.run(coroutine), None
        except BillingError as error:
            return None, error.code.value

    def teardown(self) -> None:
        self.run(self.database.dispose())
        self.loop.close()
        if self.sqlite_copy is not None:
            for path in self.sqlite_copy.parent.glob(f"{self.sqlite_copy.name}*"):  # with its -wal and -shm
                path.unlink()

    def tally(self, what: str) -> None:
        type(self).steps_run[what] += 1

    def tally_deduction(self, path: str, expected: tuple[str, Any]) -> None:
        status, detail = expected
        self.tally(f"{path}:{detail}" if status == "rejected" else f"{path}:{status}")

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self.codes)}"

    def catch_up(self) -> None:
        for pool in self.pools.values():
            pool.catch_up(self.clock.now)

    # -- provisioning --------------------------------------------------------

    @initialize(
        anchor_day=st.sampled_from(ANCHOR_DAYS),
        allowance=st.sampled_from(ALLOWANCES),
        postpaid_limit=st.sampled_from(POSTPAID_LIMITS),
        threshold=st.sampled_from(THRESHOLDS),
    )
    def provision_first_company(
        self, anchor_day: int, allowance: int, postpaid_limit: int, threshold: Decimal | None
    ) -> None:
        for code, unit in DEFAULT_PRICES.items():
            self.run(self.service.set_price(code, unit_price_minor=unit, effective_from=PRICE_FROM))
            self.prices[Price(code, None, PRICE_FROM)] = unit
        self.run(self.service.provision_company(V2_COMPANY, CompanyTerms(billing_version="v2")))
        self.run(self.service.provision_waba(V2_COMPANY, WABAS[V2_COMPANY][0], name="Legacy"))
        self.provision(1001, anchor_day, allowance, postpaid_limit, threshold)
        for waba_id in WABAS[1001][:2]:  # the third joins later, by the provision_waba rule
            self.run(self.service.provision_waba(1001, waba_id, name=f"WABA {waba_id[-1]}"))
            self.pools[1001].wabas.add(waba_id)

    def provision(
        self, company_id: int, anchor_day: int, allowance: int, postpaid_limit: int, threshold: Decimal | None
    ) -> None:
        package = PackageTerms(
            allowance=allowance,
            postpaid_limit=postpaid_limit,
            cycle_anchor_day=anchor_day,
            threshold_percent=threshold,
        )
        terms = CompanyTerms(package=package)
        self.run(self.service.provision_company(company_id, terms))
        pool = self.pools.get(company_id)
        if pool is None:
            cycle = cycle_of(self.clock.now, anchor_day)
            self.pools[company_id] = ModelPool(
                anchor_day,
                cycle,
                allowance,
                allowance,
                postpaid_limit=postpaid_limit,
                threshold_percent=threshold,
                funded_this_cycle=allowance,
            )
            return
        # A changed plan applies now: what is left of the allowance moves by the difference, never below zero.
        pool.initial = max(pool.initial + allowance - pool.allowance, 0)
        pool.funded_this_cycle = max(pool.funded_this_cycle + allowance - pool.allowance, 0)
        pool.allowance = allowance
        pool.postpaid_limit = postpaid_limit
        pool.threshold_percent = threshold

    @rule(
        company_id=st.sampled_from(V3_COMPANIES),
        anchor_day=st.sampled_from(ANCHOR_DAYS),
        allowance=st.sampled_from(ALLOWANCES),
        postpaid_limit=st.sampled_from(POSTPAID_LIMITS),
        threshold=st.sampled_from(THRESHOLDS),
    )
    def provision_company(
        self, company_id: int, anchor_day: int, allowance: int, postpaid_limit: int, threshold: Decimal | None
    ) -> None:
        self.catch_up()
        pool = self.pools.get(company_id)
        if pool is not None:
            anchor_day = pool.anchor_day  # the cycle anchor is not what this machine moves
            if postpaid_limit < pool.postpaid_used:
                # The pool may never owe more than its credit line: such a plan is refused, nothing changes.
                package = PackageTerms(allowance, postpaid_limit, anchor_day, threshold)
                _, error = self.attempt(self.service.provision_company(company_id, CompanyTerms(package=package)))
                assert error == "invalid_request"
                self.tally("provision:limit_under_used")
                return
        self.provision(company_id, anchor_day, allowance, postpaid_limit, threshold)
        self.tally("provision:applied")

    @rule(company_id=st.sampled_from((*V3_COMPANIES, UNKNOWN_COMPANY)), data=st.data())
    def provision_waba(self, company_id: int, data: st.DataObject) -> None:
        waba_id = data.draw(st.sampled_from(WABAS.get(company_id, (STRANGER_WABA,))))
        _, error = self.attempt(self.service.provision_waba(company_id, waba_id, name=f"WABA {waba_id[-1]}"))
        if company_id in self.pools:
            assert error is None
            self.pools[company_id].wabas.add(waba_id)
        else:
            assert error == "unknown_company"

    @rule(
        deduction_code=st.sampled_from(DEDUCTION_CODES),
        company_id=st.sampled_from((None, *V3_COMPANIES)),
        unit=st.integers(0, 12),
        starts_in=st.sampled_from((timedelta(0), timedelta(days=1), timedelta(days=40))),
    )
    def set_price(self, deduction_code: str, company_id: int | None, unit: int, starts_in: timedelta) -> None:
        effective_from = self.clock.now + starts_in
        _, error = self.attempt(
            self.service.set_price(
                deduction_code, unit_price_minor=unit, company_id=company_id, effective_from=effective_from
            )
        )
        if company_id is not None and company_id not in self.pools:
            assert error == "unknown_company"
            return
        assert error is None
        self.prices[Price(deduction_code, company_id, effective_from)] = unit

    # -- deductions ----------------------------------------------------------

    def draw_request(self, data: st.DataObject, batch: list[DeductionRequest]) -> DeductionRequest:
        """Mostly well-formed fresh deductions; then replays, conflicts, reused and odd ones."""
        applied = [(c, code) for c, pool in sorted(self.pools.items()) for code in sorted(pool.applied)]
        kinds = ["fresh"] * 6 + ["odd", "reuse"]
        if applied:
            kinds += ["replay", "replay", "conflict"]
        if batch:
            kinds += ["in_batch", "in_batch"]
        kind = data.draw(st.sampled_from(kinds), label="kind")
        if kind in ("replay", "conflict"):
            company_id, code = data.draw(st.sampled_from(applied), label=kind)
            billing_code, deduction_code, quantity, waba_id = self.pools[company_id].applied[code].payload
            quantity += kind == "conflict"
            return DeductionRequest(company_id, billing_code, deduction_code, code, quantity, waba_id)
        if kind == "in_batch":
            earlier = data.draw(st.sampled_from(batch), label="earlier in batch")
            if data.draw(st.booleans(), label="same payload"):
                return earlier
            return replace(earlier, billing_code="wa-other")
        if kind == "fresh" and self.pools:
            company_id = data.draw(st.sampled_from(sorted(self.pools)), label="company")
            wabas = sorted(self.pools[company_id].wabas) or [STRANGER_WABA]
            waba_id = data.draw(st.sampled_from(wabas), label="waba")
            deduction_code = data.draw(st.sampled_from(tuple(DEFAULT_PRICES)), label="deduction_code")
            quantity = data.draw(st.sampled_from(QUANTITIES[:-1]), label="quantity")
            return DeductionRequest(company_id, "wa", deduction_code, self.fresh("m"), quantity, waba_id)
        company_id = data.draw(st.sampled_from(ALL_COMPANIES), label="company")
        waba_id = data.draw(st.sampled_from((*itertools.chain(*WABAS.values()), STRANGER_WABA)), label="waba")
        deduction_code = data.draw(st.sampled_from(DEDUCTION_CODES), label="deduction_code")
        quantity = data.draw(st.sampled_from(QUANTITIES), label="quantity")
        if kind == "reuse" and self.codes_seen:
            code = data.draw(st.sampled_from(sorted(self.codes_seen)), label="reused code")
        else:
            code = self.fresh("m")
        return DeductionRequest(company_id, "wa", deduction_code, code, quantity, waba_id)

    def expect_deduction(self, request: DeductionRequest) -> tuple[str, Any]:
        """What the specification says happens to this request now: (status, detail)."""
        self.codes_seen.add(request.unique_code)
        if request.quantity < 1:
            return "rejected", "invalid_request"
        if request.company_id == V2_COMPANY:
            return "rejected", "not_shared_pool"
        pool = self.pools.get(request.company_id)
        if pool is None:
            return "rejected", "unknown_company"
        earlier = pool.applied.get(request.unique_code)
        if earlier is not None:
            if earlier.payload != _payload(request):
                return "rejected", "idempotency_conflict"
            return "replayed", earlier
        if request.waba_id not in pool.wabas:
            return "rejected", "unknown_waba"
        unit = resolve_price(self.prices, request.deduction_code, request.company_id, self.clock.now)
        if unit is None:
            return "rejected", "unknown_deduction_code"
        amount = request.quantity * unit
        before = pool.total
        taken = pool.take(amount)
        if taken is None:
            return "rejected", "quota_exceeded"
        deduction = AppliedDeduction(_payload(request), request.waba_id, amount, taken, before, pool.total, pool.cycle)
        pool.applied[request.unique_code] = deduction
        pool.spend[(pool.cycle, request.waba_id)] += amount
        return "applied", deduction

    def compare_deduction(self, outcome: BatchItemResult, expected: tuple[str, Any]) -> None:
        status, detail = expected
        assert outcome.status == status, (outcome, expected)
        if status == "rejected":
            assert outcome.error is not None and outcome.error.code.value == detail, (outcome, expected)
            return
        result = outcome.result
        assert result is not None
        assert result.replayed == (status == "replayed")
        assert (result.amount, result.value_before, result.value_after) == (
            detail.amount,
            detail.value_before,
            detail.value_after,
        ), (result, detail)
        assert _portions(result.allocations) == detail.taken, (result, detail)
        first = f"wa_balance_{detail.taken[0][0]}" if detail.taken else None
        assert result.credited_to == first
        if status == "applied":
            detail.deduction_id = result.deduction_id
        else:
            assert result.deduction_id == detail.deduction_id

    @rule(data=st.data())
    def deduct(self, data: st.DataObject) -> None:
        self.catch_up()
        request = self.draw_request(data, [])
        expected = self.expect_deduction(request)
        result, error = self.attempt(self.service.deduct(request))
        if error is not None:
            outcome = BatchItemResult(request.unique_code, "rejected", error=BillingError(Rejection(error), error))
        else:
            outcome = BatchItemResult(request.unique_code, "replayed" if result.replayed else "applied", result)
        self.compare_deduction(outcome, expected)
        self.tally_deduction("deduct", expected)

    @rule(data=st.data(), size=st.integers(1, 8))
    def deduct_batch(self, data: st.DataObject, size: int) -> None:
        self.catch_up()
        batch: list[DeductionRequest] = []
        for _ in range(size):
            batch.append(self.draw_request(data, batch))
        expected = [self.expect_deduction(request) for request in batch]
        outcomes = self.run(self.service.deduct_batch(batch))
        assert [o.unique_code for o in outcomes] == [r.unique_code for r in batch]
        for outcome, expectation in zip(outcomes, expected, strict=True):
            self.compare_deduction(outcome, expectation)
            self.tally_deduction("batch", expectation)

    # -- refunds and payments ------------------------------------------------

    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        self.catch_up()
        with_deductions = [c for c, pool in sorted(self.pools.items()) if pool.applied]
        companies = (*with_deductions * 4, *sorted(self.pools), UNKNOWN_COMPANY)
        company_id = data.draw(st.sampled_from(companies), label="company")
        pool = self.pools.get(company_id)
        choices = sorted(pool.applied) * 6 if pool else []
        unique_code = data.draw(st.sampled_from([*choices, *sorted(self.codes_seen), "never-sent"]), label="code")
        refund_codes = sorted(pool.refunds) if pool else []
        if refund_codes and data.draw(st.booleans(), label="reuse refund_code"):
            refund_code = data.draw(st.sampled_from(refund_codes), label="refund_code")
        else:
            refund_code = self.fresh("r")
        request = RefundRequest(company_id=company_id, unique_code=unique_code, refund_code=refund_code)
        self.tally(f"refund:{self.check_refund(request, pool)}")

    def check_refund(self, request: RefundRequest, pool: ModelPool | None) -> str:
        """Send the refund, compare with the model; returns which case it was."""
        unique_code, refund_code = request.unique_code, request.refund_code
        result, error = self.attempt(self.service.refund(request))
        if pool is None:
            assert error == "unknown_company"
            return "unknown_company"
        deduction = pool.applied.get(unique_code)
        if deduction is None:
            assert error == "unknown_deduction"
            return "unknown_deduction"
        earlier = pool.refunds.get(refund_code)
        if earlier is not None:
            if earlier.unique_code != unique_code:
                assert error == "idempotency_conflict"
                return "idempotency_conflict"
            assert error is None and result.replayed
            assert result.refund_id == earlier.refund_id
            self.compare_money(result, earlier)
            return "replayed"
        if unique_code in pool.refunded:
            assert error == "already_refunded"
            return "already_refunded"
        before = pool.total
        credits = pool.give_back(deduction.taken, deduction.cycle)
        if deduction.cycle == pool.cycle:
            pool.spend[(pool.cycle, deduction.waba_id)] -= deduction.amount
        expected = ModelRefund(unique_code, deduction.amount, before, pool.total, credits)
        pool.refunds[refund_code] = expected
        pool.refunded.add(unique_code)
        assert error is None and not result.replayed, (error, result)
        expected.refund_id = result.refund_id
        self.compare_money(result, expected)
        return "applied"

    @staticmethod
    def compare_money(result: Any, expected: ModelRefund | ModelPayment) -> None:
        assert (result.amount, result.value_before, result.value_after) == (
            expected.amount,
            expected.value_before,
            expected.value_after,
        ), (result, expected)
        assert _portions(result.allocations) == expected.credits, (result, expected)

    def pay(self, data: st.DataObject, kind: str) -> None:
        self.catch_up()
        company_id = data.draw(st.sampled_from((*sorted(self.pools) * 3, UNKNOWN_COMPANY)), label="company")
        amount = data.draw(st.integers(0, 300), label="amount")  # 0 is not a valid amount
        pool = self.pools.get(company_id)
        references = sorted(ref for k, ref in pool.payments if k == kind) if pool else []
        if references and data.draw(st.booleans(), label="reuse reference"):
            reference = data.draw(st.sampled_from(references), label="reference")
            if data.draw(st.booleans(), label="same amount"):
                amount = pool.payments[(kind, reference)].amount
        else:
            reference = self.fresh("pay")
        self.tally(f"{kind}:{self.check_payment(kind, company_id, amount, reference)}")

    def check_payment(self, kind: str, company_id: int, amount: int, reference: str) -> str:
        """Send the payment, compare with the model; returns which case it was."""
        pool = self.pools.get(company_id)
        method = self.service.top_up if kind == "top_up" else self.service.settle_postpaid
        result, error = self.attempt(method(company_id, amount=amount, payment_reference=reference))
        if amount == 0:
            assert error == "invalid_request"
            return "invalid_request"
        if pool is None:
            assert error == "unknown_company"
            return "unknown_company"
        earlier = pool.payments.get((kind, reference))
        if earlier is not None:
            if earlier.amount != amount:
                assert error == "idempotency_conflict"
                return "idempotency_conflict"
            assert error is None and result.replayed and result.payment_id == earlier.payment_id
            self.compare_money(result, earlier)
            return "replayed"
        before = pool.total
        credits = pool.fund(amount)
        expected = ModelPayment(amount, before, pool.total, credits)
        pool.payments[(kind, reference)] = expected
        assert error is None and not result.replayed, (error, result)
        expected.payment_id = result.payment_id
        self.compare_money(result, expected)
        return "applied"

    @rule(data=st.data())
    def top_up(self, data: st.DataObject) -> None:
        self.pay(data, "top_up")

    @rule(data=st.data())
    def settle_postpaid(self, data: st.DataObject) -> None:
        self.pay(data, "settlement")

    # -- time ----------------------------------------------------------------

    @rule(
        how=st.sampled_from(("to_boundary", "hours")),
        hours=st.integers(1, 24 * 40),
        offset_seconds=st.sampled_from((-1, 0, 1)),
        call_reset=st.booleans(),
    )
    def advance_clock(self, how: str, hours: int, offset_seconds: int, call_reset: bool) -> None:
        if how == "hours":
            target = self.clock.now + timedelta(hours=hours)
        else:
            pool = self.pools[1001]
            next_start = cycle_start_of(_month_after(*cycle_of(self.clock.now, pool.anchor_day)), pool.anchor_day)
            target = max(next_start + timedelta(seconds=offset_seconds), self.clock.now)
        self.clock.now = target
        self.catch_up()
        if call_reset:
            reset = self.run(self.service.reset_cycles())
            assert set(reset) <= set(self.pools), reset
        self.tally("reset_cycles" if call_reset else "advance_clock")

    # -- what must hold after every step -------------------------------------

    @invariant()
    def balances_match_the_model(self) -> None:
        self.catch_up()
        for company_id in ALL_COMPANIES:
            pool = self.pools.get(company_id)
            view, error = self.attempt(self.service.balance(company_id))
            if pool is None:
                assert error == ("not_shared_pool" if company_id == V2_COMPANY else "unknown_company")
                continue
            assert error is None
            engine = (
                view.total,
                view.available,
                view.initial_remaining,
                view.additional_remaining,
                view.postpaid_used,
                view.allowance,
                view.postpaid_limit,
                view.below_zero,
                view.low_balance,
                view.threshold_percent,
            )
            model = (
                pool.total,
                pool.available,
                pool.initial,
                pool.additional,
                pool.postpaid_used,
                pool.allowance,
                pool.postpaid_limit,
                pool.total < 0,
                pool.is_low,
                Decimal(40) if pool.threshold_percent is None else pool.threshold_percent,
            )
            assert engine == model, (company_id, engine, model)
            assert view.cycle_starts_at == cycle_start_of(pool.cycle, pool.anchor_day)
            assert view.cycle_ends_at == cycle_start_of(_month_after(*pool.cycle), pool.anchor_day)
            spend = {w.waba_id: w.spent_this_cycle for w in view.wabas}
            assert spend == {waba: pool.spend[(pool.cycle, waba)] for waba in pool.wabas}, (company_id, spend)

    @invariant()
    def events_match_the_model(self) -> None:
        rows = self.run(self._event_counts())
        for company_id, pool in self.pools.items():
            topped_up = sum(1 for kind, _ in pool.payments if kind == "top_up")
            settled = sum(1 for kind, _ in pool.payments if kind == "settlement")
            assert rows[(company_id, "balance_topped_up")] == topped_up
            assert rows[(company_id, "postpaid_settled")] == settled
            assert rows[(company_id, "balance_low")] == pool.low_warnings, (company_id, pool.low_warnings)
            assert rows[(company_id, "balance_below_zero")] == len(pool.below_zero_cycles), (
                company_id,
                pool.below_zero_cycles,
            )

    async def _event_counts(self) -> Counter[tuple[int, str]]:
        async with self.database.read() as connection:
            rows = await connection.execute(
                select(outbox_events.c.company_id, outbox_events.c.event_type, func.count()).group_by(
                    outbox_events.c.company_id, outbox_events.c.event_type
                )
            )
            return Counter({(row[0], row[1]): row[2] for row in rows})

    @invariant()
    def reconcile_passes(self) -> None:
        report = self.run(reconcile(self.database))
        assert report.ok, report.violations
        assert report.checks["deductions"] == sum(len(pool.applied) for pool in self.pools.values())


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite file each example copies, instead of running the migrations again."""
    path = tmp_path_factory.mktemp("stateful") / "template.db"
    upgrade(f"sqlite:///{path}")
    return str(path)


def _run(backend: str, url: str, machine_settings: settings) -> None:
    machine = type(f"LedgerMachine_{backend}", (LedgerMachine,), {"backend": backend, "url": url})
    run_state_machine_as_test(machine, settings=machine_settings)
    steps = dict(sorted(LedgerMachine.steps_run.items()))
    print(f"\n[{backend}] {LedgerMachine.examples_run[backend]} examples; steps {steps}")
    LedgerMachine.steps_run.clear()


def test_ledger_matches_the_model_on_sqlite(sqlite_template: str) -> None:
    _run("sqlite", sqlite_template, SQLITE_SETTINGS)


@pytest.mark.postgres
def test_ledger_matches_the_model_on_postgres(postgres_url: str) -> None:
    _run("postgres", postgres_url, POSTGRES_SETTINGS)
