"""The engine against a small reference model, step by step, on SQLite and on PostgreSQL.

Hypothesis drives a state machine through provisioning (allowance up, down and
up again, new anchor days and timezones, terms left out, currency and billing
version changes that must be refused), deductions (fresh codes, replays,
conflicting repeats), batches with duplicates inside them, refunds (replayed
with another reason too), top-ups and postpaid settlements (sharing references,
over-settling, ceiling-sized amounts), price changes and the clock crossing cycle
boundaries. The reference model below is written from the specification with
plain ints and dicts; it does not import the engine's domain rules. After every
step the engine's balance must equal the model's figures, its outbox must hold
the events the model expects, `reconcile` must pass, and the money in each pool
must be explained: the allowance the rule granted, plus payments, minus
deductions, plus refunds, as the engine answered them.
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

from tests.conftest import FakeClock, service_for, truncate_all
from wabapool.domain.errors import BillingError, Rejection
from wabapool.service import (
    BatchItemResult,
    CompanyTerms,
    DeductionRequest,
    PackageTerms,
    RefundRequest,
)
from wabapool.service.models import KEEP, Keep
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
# Timezones without daylight saving time, so the model keeps them as fixed offsets.
TIMEZONES = {"Asia/Jakarta": timedelta(hours=7), "UTC": timedelta(0)}
PRICE_FROM = datetime(2025, 7, 1, tzinfo=UTC)
CEILING = 2**53 - 1  # the ceiling on money: every amount and figure of a pool

V3_COMPANIES = (1001, 1002)
V2_COMPANY = 1003  # a legacy company: its one WABA has an empty package of its own
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

CycleKey = datetime  # a cycle is known by its start (UTC)


def _month_before(year: int, month: int) -> tuple[int, int]:
    return (year, month - 1) if month > 1 else (year - 1, 12)


def _month_after(year: int, month: int) -> tuple[int, int]:
    return (year, month + 1) if month < 12 else (year + 1, 1)


def _boundary(year: int, month: int, anchor_day: int, offset: timedelta) -> datetime:
    """Local midnight of the anchor day (the month's last day if shorter), in UTC."""
    day = min(anchor_day, calendar.monthrange(year, month)[1])
    return datetime(year, month, day, tzinfo=UTC) - offset


def first_boundary_after(at: datetime, anchor_day: int, offset: timedelta) -> datetime:
    """Where a cycle that starts at `at` ends under these terms."""
    local = at + offset
    year, month = local.year, local.month
    while (boundary := _boundary(year, month, anchor_day, offset)) <= at:
        year, month = _month_after(year, month)
    return boundary


def cycle_containing(at: datetime, anchor_day: int, offset: timedelta) -> tuple[datetime, datetime]:
    local = at + offset
    start = _boundary(local.year, local.month, anchor_day, offset)
    if start > at:
        start = _boundary(*_month_before(local.year, local.month), anchor_day, offset)
    return start, first_boundary_after(start, anchor_day, offset)


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
    reason: str | None
    amount: int
    value_before: int
    value_after: int
    credits: list[tuple[str, int]]
    refund_id: int = 0


@dataclass
class ModelPayment:
    kind: str
    amount: int
    value_before: int
    value_after: int
    credits: list[tuple[str, int]]
    payment_id: int = 0


@dataclass
class ModelPool:
    """One company's pool as plain numbers."""

    anchor_day: int
    offset: timedelta
    cycle: CycleKey
    cycle_end: datetime
    allowance: int
    initial: int
    used: int = 0  # allowance used this cycle: initial == max(0, allowance - used)
    additional: int = 0
    postpaid_limit: int = 0
    postpaid_used: int = 0
    wabas: set[str] = field(default_factory=set)
    applied: dict[str, AppliedDeduction] = field(default_factory=dict)
    refunds: dict[str, ModelRefund] = field(default_factory=dict)  # by refund_code
    refunded: set[str] = field(default_factory=set)  # unique_codes given back
    payments: dict[str, ModelPayment] = field(default_factory=dict)  # by reference, whichever kind
    spend: Counter[tuple[CycleKey, str]] = field(default_factory=Counter)
    below_zero_cycles: set[CycleKey] = field(default_factory=set)
    threshold_percent: Decimal | None = None
    funded_this_cycle: int = 0  # allowance granted + additional carried in + top-ups credited
    low_warning_armed: bool = True
    low_warnings: int = 0
    # Where every unit of the pool came from, as the engine answered: the money invariant.
    allowance_granted: int = 0  # by the rule, net of what expired or a lowered plan took back
    moved: bool = False  # any ledger entry written (the currency is then fixed)
    paid: int = 0
    deducted: int = 0
    refunded_money: int = 0

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
        """A new cycle grants the allowance again (nothing used); what was left of it expires.

        The current cycle keeps its end; new anchor or timezone terms shape the cycles after it.
        """
        while at >= self.cycle_end:
            self.cycle, self.cycle_end = (
                self.cycle_end,
                first_boundary_after(self.cycle_end, self.anchor_day, self.offset),
            )
            self.allowance_granted += self.allowance - self.initial
            self.moved |= self.allowance != self.initial
            self.initial = self.allowance
            self.used = 0
            self.funded_this_cycle = self.allowance + self.additional
            self.low_warning_armed = True

    def warn_after_change(self, spendable_before: int, total_before: int) -> None:
        """A change other than a deduction: the same warnings, and a lift above the threshold re-arms."""
        if self.low_warning_armed and self.is_low and self.initial + self.additional < spendable_before:
            self.low_warning_armed = False
            self.low_warnings += 1
        if total_before >= 0 > self.total:
            self.below_zero_cycles.add(self.cycle)
        if not self.low_warning_armed and not self.is_low:
            self.low_warning_armed = True

    def set_allowance(self, allowance: int) -> None:
        """remaining = max(0, allowance - used): a raise grants the difference, a cut takes back the unused part."""
        spendable_before, total_before = self.initial + self.additional, self.total
        granted = max(allowance - self.used, 0) - self.initial
        self.allowance = allowance
        self.initial += granted
        self.allowance_granted += granted
        self.moved |= granted != 0
        self.funded_this_cycle = max(self.funded_this_cycle + granted, 0)
        self.warn_after_change(spendable_before, total_before)

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
        self.used += from_initial
        self.deducted += amount
        self.moved |= amount > 0
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
            elif quota_type == "initial":
                # Allowance comes back by lowering `used`: only as far as the allowance in force covers it.
                self.used = max(self.used - part, 0)
                credited = max(self.allowance - self.used, 0) - self.initial
                if credited > 0:
                    credits.append(("initial", credited))
                    self.initial += credited
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
                self.additional += part
        return credits

    def fits_the_ceiling_after_top_up(self, amount: int) -> bool:
        repaid = min(amount, self.postpaid_used)
        available = (
            self.initial + self.additional + amount - repaid + self.postpaid_limit - (self.postpaid_used - repaid)
        )
        return max(available, self.allowance, self.used, self.postpaid_limit) <= CEILING

    def fits_the_ceiling_with(self, allowance: int | None, postpaid_limit: int | None) -> bool:
        """Whether new terms keep every figure at or under the ceiling (checked after each term, as sent)."""
        limit = self.postpaid_limit if postpaid_limit is None else postpaid_limit
        prepaid = self.initial + self.additional
        figures = [prepaid + limit - self.postpaid_used, self.allowance, self.used, limit]
        if allowance is not None:
            initial = max(allowance - self.used, 0)
            figures += [initial + self.additional + limit - self.postpaid_used, allowance]
        return max(figures) <= CEILING

    def settle(self, amount: int) -> list[tuple[str, int]]:
        """A settlement pays the postpaid bill and nothing else."""
        self.postpaid_used -= amount
        self.paid += amount
        self.moved = True
        return [("postpaid", amount)]

    def fund(self, amount: int) -> list[tuple[str, int]]:
        """A payment pays off postpaid use first, the rest is `additional` credit."""
        repaid = min(amount, self.postpaid_used)
        self.postpaid_used -= repaid
        self.paid += amount
        self.moved = True
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
        self.service = service_for(self.database, clock=self.clock)
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
        for pool in (*self.pools.values(), self.v2_package):
            pool.catch_up(self.clock.now)

    def pool_of(self, company_id: int) -> ModelPool | None:
        """The model of what the company's deductions charge: its pool, or the v2 company's one package."""
        return self.v2_package if company_id == V2_COMPANY else self.pools.get(company_id)

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
        start, end = cycle_containing(self.clock.now, 1, TIMEZONES["Asia/Jakarta"])
        self.v2_package = ModelPool(
            1,
            TIMEZONES["Asia/Jakarta"],
            start,
            end,
            0,
            0,
            postpaid_limit=0,
            threshold_percent=None,
            funded_this_cycle=0,
        )
        self.v2_package.wabas.add(WABAS[V2_COMPANY][0])
        self.provision(1001, anchor_day, allowance, postpaid_limit, threshold)
        for waba_id in WABAS[1001][:2]:  # the third joins later, by the provision_waba rule
            self.run(self.service.provision_waba(1001, waba_id, name=f"WABA {waba_id[-1]}"))
            self.pools[1001].wabas.add(waba_id)

    def provision(
        self,
        company_id: int,
        anchor_day: int | None,
        allowance: int | None,
        postpaid_limit: int | None,
        threshold: Decimal | None | Keep,
    ) -> None:
        """Send the package terms (None or KEEP: left out) and apply them to the model."""
        package = PackageTerms(
            allowance=allowance,
            postpaid_limit=postpaid_limit,
            cycle_anchor_day=anchor_day,
            threshold_percent=threshold,
        )
        pool = self.pools.get(company_id)
        if pool is not None and postpaid_limit is not None and postpaid_limit < pool.postpaid_used:
            # The pool may never owe more than its credit line: such a plan is refused, nothing changes.
            _, error = self.attempt(self.service.provision_company(company_id, CompanyTerms(package=package)))
            assert error == "invalid_request"
            self.tally("provision:limit_under_used")
            return
        if pool is not None and not pool.fits_the_ceiling_with(allowance, postpaid_limit):
            _, error = self.attempt(self.service.provision_company(company_id, CompanyTerms(package=package)))
            assert error == "amount_too_large"
            self.tally("provision:ceiling")
            return
        self.run(self.service.provision_company(company_id, CompanyTerms(package=package)))
        if pool is None:
            anchor_day = anchor_day or 1
            start, end = cycle_containing(self.clock.now, anchor_day, TIMEZONES["Asia/Jakarta"])
            self.pools[company_id] = ModelPool(
                anchor_day,
                TIMEZONES["Asia/Jakarta"],
                start,
                end,
                allowance or 0,
                allowance or 0,
                postpaid_limit=postpaid_limit or 0,
                threshold_percent=None if threshold is KEEP else threshold,
                funded_this_cycle=allowance or 0,
                allowance_granted=allowance or 0,
                moved=bool(allowance),
            )
            self.tally("provision:created")
            return
        # Terms left out are kept; the order is the engine's: limit, threshold, allowance, anchor day.
        if postpaid_limit is not None:
            pool.postpaid_limit = postpaid_limit
        if threshold is not KEEP:
            pool.threshold_percent = threshold
        if allowance is not None:
            pool.set_allowance(allowance)
        if anchor_day is not None:
            pool.anchor_day = anchor_day  # from the current cycle's end on
        self.tally("provision:applied")

    @rule(
        company_id=st.sampled_from(V3_COMPANIES),
        anchor_day=st.sampled_from((None, *ANCHOR_DAYS)),
        allowance=st.sampled_from((None, *ALLOWANCES)),
        postpaid_limit=st.sampled_from((None, *POSTPAID_LIMITS)),
        threshold=st.sampled_from((KEEP, *THRESHOLDS)),
    )
    def provision_company(
        self,
        company_id: int,
        anchor_day: int | None,
        allowance: int | None,
        postpaid_limit: int | None,
        threshold: Decimal | None | Keep,
    ) -> None:
        self.catch_up()
        self.provision(company_id, anchor_day, allowance, postpaid_limit, threshold)

    @rule(company_id=st.sampled_from(V3_COMPANIES), allowance=st.sampled_from(ALLOWANCES), data=st.data())
    def allowance_down_and_up_again(self, company_id: int, allowance: int, data: st.DataObject) -> None:
        """The plan cut to nothing and restored within one cycle grants nothing twice."""
        self.catch_up()
        if company_id not in self.pools:
            return
        for step in (0, allowance):
            self.provision(company_id, None, step, None, KEEP)

    @rule(
        company_id=st.sampled_from(V3_COMPANIES),
        timezone=st.sampled_from((None, *TIMEZONES)),
        currency=st.sampled_from((None, "IDR", "USD")),
        billing_version=st.sampled_from((None, "v3", "v2")),
    )
    def change_company_terms(
        self, company_id: int, timezone: str | None, currency: str | None, billing_version: str | None
    ) -> None:
        """Terms left out are kept; the billing version and a used currency are locked; a timezone waits."""
        self.catch_up()
        pool = self.pools.get(company_id)
        if pool is None:
            return
        terms = CompanyTerms(billing_version=billing_version, currency=currency, timezone=timezone)  # type: ignore[arg-type]
        _, error = self.attempt(self.service.provision_company(company_id, terms))
        if billing_version == "v2":
            assert error == "billing_version_locked"
            self.tally("company:billing_version_locked")
            return
        if currency == "USD":
            # Every pool here has moved money by now (its opening allowance, or any payment or deduction).
            if pool.moved:
                assert error == "currency_locked"
                self.tally("company:currency_locked")
                return
            assert error is None
            self.run(self.service.provision_company(company_id, CompanyTerms(currency="IDR")))
            self.tally("company:currency_changed_before_use")
        assert error is None
        if timezone is not None:
            pool.offset = TIMEZONES[timezone]  # from the current cycle's end on
        self.tally("company:terms")

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
        pool = self.pool_of(request.company_id)
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
        if self.v2_package.applied:
            with_deductions.append(V2_COMPANY)
        companies = (*with_deductions * 4, *sorted(self.pools), UNKNOWN_COMPANY)
        company_id = data.draw(st.sampled_from(companies), label="company")
        pool = self.pool_of(company_id)
        choices = sorted(pool.applied) * 6 if pool else []
        unique_code = data.draw(st.sampled_from([*choices, *sorted(self.codes_seen), "never-sent"]), label="code")
        refund_codes = sorted(pool.refunds) if pool else []
        if refund_codes and data.draw(st.booleans(), label="reuse refund_code"):
            refund_code = data.draw(st.sampled_from(refund_codes), label="refund_code")
        else:
            refund_code = self.fresh("r")
        reason = data.draw(st.sampled_from((None, "not delivered", "failed")), label="reason")
        request = RefundRequest(company_id=company_id, unique_code=unique_code, refund_code=refund_code, reason=reason)
        v2 = "(v2)" if company_id == V2_COMPANY else ""
        self.tally(f"refund{v2}:{self.check_refund(request, pool)}")

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
            if earlier.unique_code != unique_code or earlier.reason != request.reason:
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
        # What the pool got back: the deduction, but for allowance a lowered plan no longer covers.
        amount = sum(part for _, part in credits)
        pool.refunded_money += amount
        pool.moved |= amount > 0
        expected = ModelRefund(unique_code, request.reason, amount, before, pool.total, credits)
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
        companies = (*sorted(self.pools) * 3, V2_COMPANY, V2_COMPANY, UNKNOWN_COMPANY)
        company_id = data.draw(st.sampled_from(companies), label="company")
        # 0 is not a valid amount; the ceiling-sized ones reach the ceiling on money or pass it.
        amount = data.draw(st.sampled_from((0, 1, 50, 120, 300, CEILING - 400, CEILING, CEILING + 1)), label="amount")
        pool = self.pool_of(company_id)
        references = sorted(pool.payments) if pool else []
        if references and data.draw(st.booleans(), label="reuse reference"):
            reference = data.draw(st.sampled_from(references), label="reference")
            if data.draw(st.booleans(), label="same amount"):
                amount = pool.payments[reference].amount
        else:
            reference = self.fresh("pay")
        # A v2 company's payment names the WABA whose package it funds; now and then it forgets to.
        waba_id = None
        if company_id == V2_COMPANY and data.draw(st.integers(0, 4), label="names its WABA") > 0:
            waba_id = WABAS[V2_COMPANY][0]
        v2 = "(v2)" if company_id == V2_COMPANY else ""
        self.tally(f"{kind}{v2}:{self.check_payment(kind, company_id, amount, reference, waba_id)}")

    def check_payment(self, kind: str, company_id: int, amount: int, reference: str, waba_id: str | None) -> str:
        """Send the payment, compare with the model; returns which case it was."""
        pool = self.pool_of(company_id)
        method = self.service.top_up if kind == "top_up" else self.service.settle_postpaid
        result, error = self.attempt(method(company_id, amount=amount, payment_reference=reference, waba_id=waba_id))
        if amount == 0:
            assert error == "invalid_request"
            return "invalid_request"
        if amount > CEILING:
            assert error == "amount_too_large"
            return "amount_too_large"
        if company_id == V2_COMPANY and waba_id is None:
            assert error == "invalid_request"  # which package: a v2 company has one per WABA
            return "v2_without_waba"
        if pool is None:
            assert error == "unknown_company"
            return "unknown_company"
        earlier = pool.payments.get(reference)
        if earlier is not None:
            if earlier.kind != kind or earlier.amount != amount:
                assert error == "idempotency_conflict"
                return "idempotency_conflict"
            assert error is None and result.replayed and result.payment_id == earlier.payment_id
            self.compare_money(result, earlier)
            return "replayed"
        if kind == "settlement" and amount > pool.postpaid_used:
            assert error == "settlement_exceeds_used", error
            return "settlement_exceeds_used"
        if kind == "top_up" and not pool.fits_the_ceiling_after_top_up(amount):
            assert error == "amount_too_large", error
            return "ceiling"
        before = pool.total
        credits = pool.fund(amount) if kind == "top_up" else pool.settle(amount)
        expected = ModelPayment(kind, amount, before, pool.total, credits)
        pool.payments[reference] = expected
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
            target = max(self.pools[1001].cycle_end + timedelta(seconds=offset_seconds), self.clock.now)
        self.clock.now = target
        self.catch_up()
        if call_reset:
            reset = self.run(self.service.reset_cycles())
            assert set(reset) <= {*self.pools, V2_COMPANY}, reset
        self.tally("reset_cycles" if call_reset else "advance_clock")

    # -- what must hold after every step -------------------------------------

    @invariant()
    def balances_match_the_model(self) -> None:
        self.catch_up()
        for company_id in ALL_COMPANIES:
            pool = self.pool_of(company_id)
            view, error = self.attempt(self.service.balance(company_id))
            if pool is None:
                assert error == "unknown_company"
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
            assert (view.cycle_starts_at, view.cycle_ends_at) == (pool.cycle, pool.cycle_end)
            assert pool.cycle_end - pool.cycle <= timedelta(days=31, hours=7), "a cycle is never longer than a month"
            spend = {w.waba_id: w.spent_this_cycle for w in view.wabas}
            assert spend == {waba: pool.spend[(pool.cycle, waba)] for waba in pool.wabas}, (company_id, spend)

    @invariant()
    def money_is_explained(self) -> None:
        """The pool holds the allowance the rule granted, plus payments, minus deductions, plus refunds."""
        self.catch_up()
        for company_id, pool in self.pools.items():
            view = self.run(self.service.balance(company_id))
            explained = pool.allowance_granted + pool.paid - pool.deducted + pool.refunded_money
            assert view.total == explained, (company_id, view.total, explained)
            assert view.initial_remaining == max(pool.allowance - pool.used, 0)

    @invariant()
    def events_match_the_model(self) -> None:
        rows = self.run(self._event_counts())
        for company_id, pool in self.pools.items():
            topped_up = sum(1 for payment in pool.payments.values() if payment.kind == "top_up")
            settled = sum(1 for payment in pool.payments.values() if payment.kind == "settlement")
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
        assert report.checks["deductions"] == sum(len(pool.applied) for pool in (*self.pools.values(), self.v2_package))


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
