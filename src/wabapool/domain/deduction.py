"""The deduction group's decision, pure: the packages' state and the group's requests in, outcomes out.

Step 3 of the deduction path (the queue groups, the unit of work runs the
transaction, this decides). Given each package's state (locked and caught up
by the caller), the codes already stored, which package each WABA charges and
the price book, it answers every request in order and says what each package
becomes; the caller writes that. No I/O, so every rule here is tested on
plain data.

Each request gets exactly one outcome, in this order of precedence:
a code already stored or taken earlier in the group is a replay (same
payload) or `idempotency_conflict`; then `unknown_waba`, `not_shared_pool`,
`unknown_deduction_code`; then the money rules: the WABA's spending cap
(`waba_cap_exceeded`, `domain.caps`), then the pool (`quota_exceeded`); a
refused request leaves both untouched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, NamedTuple, Protocol, TypeVar

from wabapool.domain import operations
from wabapool.domain.caps import CapRun, CapState, capped_part
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.events import DomainEvent
from wabapool.domain.pricing import PriceBook


class Asked(Protocol):
    """What the decision reads of one deduction request."""

    @property
    def unique_code(self) -> str: ...
    @property
    def payload_hash(self) -> str: ...
    @property
    def waba_id(self) -> str: ...
    @property
    def deduction_code(self) -> str: ...
    @property
    def phone_number(self) -> str | None: ...
    @property
    def quantity(self) -> int: ...
    @property
    def category(self) -> str | None: ...


class Stored(Protocol):
    """A deduction already in the ledger, as far as a repeat of its code needs it."""

    @property
    def payload_hash(self) -> str: ...


A = TypeVar("A", bound=Asked)


@dataclass(slots=True)
class Applied(Generic[A]):
    """A deduction the group takes; its id comes from the write."""

    item: A
    package_id: int
    unit_price_minor: int
    market: str | None
    amount: int
    value_before: int
    value_after: int
    charged: operations.Charged
    capped_minor: int = 0  # the part its WABA's spending cap counts


@dataclass(frozen=True, slots=True)
class RepeatInGroup(Generic[A]):
    """A code repeated inside the group with the same payload: the first one's result, replayed."""

    first: Applied[A]


@dataclass(frozen=True, slots=True)
class Replay:
    """A code already stored with the same payload: its stored result is the answer."""

    stored: Stored


@dataclass(frozen=True, slots=True)
class Refused:
    """A request the group refuses; it takes nothing."""

    unique_code: str
    error: BillingError


Outcome = Applied[A] | RepeatInGroup[A] | Replay | Refused


@dataclass(slots=True)
class Decision(Generic[A]):
    """An outcome per request in order, what each package becomes, the deductions taken and the events raised."""

    outcomes: list[Outcome[A]]
    states: dict[int, operations.PoolState]
    applied: list[Applied[A]] = field(default_factory=list)
    events: dict[int, list[DomainEvent]] = field(default_factory=lambda: defaultdict(list))
    caps: dict[int, CapRun] = field(default_factory=dict)  # per package, its WABAs that have a cap


class _Priced(NamedTuple):
    """A request that reaches a package, waiting to be charged in its package's run."""

    position: int
    package_id: int
    unit_price_minor: int
    market: str | None
    amount: int


def decide(
    items: Sequence[A],
    states: Mapping[int, operations.PoolState],
    stored: Mapping[str, Stored],
    package_of: Mapping[str, int | None],
    book: PriceBook,
    *,
    caps: Mapping[str, CapState] | None = None,
) -> Decision[A]:
    """Decide every request in order against the packages in memory (and the WABAs' spending `caps`).

    Requests that reach a package are charged in runs (`deduct_many`), one run
    per package; a run ends early only where a code repeats one still waiting,
    so the repeat sees whether the first was taken.
    """
    outcomes: list[Outcome[A] | None] = [None] * len(items)
    decision: Decision[A] = Decision([], dict(states))
    for package_id, state in states.items():
        mine = {waba: cap for waba, cap in (caps or {}).items() if package_of.get(waba) == package_id}
        if mine:
            decision.caps[package_id] = CapRun(mine, company_id=state.company_id, cycle_label=state.cycle_label)
    taken: dict[str, Applied[A]] = {}
    waiting: dict[int, list[_Priced]] = defaultdict(list)
    waiting_codes: set[str] = set()
    for index, item in enumerate(items):
        code = item.unique_code
        if code in waiting_codes:
            _charge(items, waiting, decision, outcomes, taken, at=book.at)
            waiting_codes.clear()
        earlier: Applied[A] | Stored | None = stored.get(code) or taken.get(code)
        if earlier is not None:
            outcomes[index] = _repeat(item, earlier)
            continue
        priced = _route(index, item, package_of, book)
        if isinstance(priced, Refused):
            outcomes[index] = priced
        else:
            waiting[priced.package_id].append(priced)
            waiting_codes.add(code)
    _charge(items, waiting, decision, outcomes, taken, at=book.at)
    for package_id, cap_run in decision.caps.items():
        decision.events[package_id].extend(cap_run.events)
    for index, outcome in enumerate(outcomes):
        if outcome is None:
            raise RuntimeError(f"item {index} of a group was left without an outcome")
        decision.outcomes.append(outcome)
    return decision


def _route(index: int, item: Asked, package_of: Mapping[str, int | None], book: PriceBook) -> _Priced | Refused:
    """The package a request charges and its price, or why it reaches none."""
    code = item.unique_code
    if item.waba_id not in package_of:
        error = BillingError(Rejection.UNKNOWN_WABA, "no such WABA in this company", {"waba_id": item.waba_id})
        return Refused(code, error)
    package_id = package_of[item.waba_id]
    if package_id is None:
        error = BillingError(
            Rejection.NOT_SHARED_POOL,
            "this WABA has no package to charge: provision the company's pool or the WABA's package",
            {"waba_id": item.waba_id},
        )
        return Refused(code, error)
    price, market = book.price(item.deduction_code, item.phone_number)
    if price is None:
        error = BillingError(
            Rejection.UNKNOWN_DEDUCTION_CODE,
            "no price for this deduction_code",
            {"deduction_code": item.deduction_code},
        )
        return Refused(code, error)
    return _Priced(index, package_id, price.unit_price_minor, market, item.quantity * price.unit_price_minor)


def _charge(
    items: Sequence[A],
    waiting: dict[int, list[_Priced]],
    decision: Decision[A],
    outcomes: list[Outcome[A] | None],
    taken: dict[str, Applied[A]],
    *,
    at: datetime,
) -> None:
    """Charge each package's waiting run in order; every request of it is applied or refused.

    `at` is the group's time: an auto-recharge request a run raises is dated by it.
    """
    for package_id, run_items in waiting.items():
        state = decision.states[package_id]
        cap_run = decision.caps.get(package_id)
        spenders = [(items[p.position].waba_id, items[p.position].category) for p in run_items] if cap_run else []
        run = operations.deduct_many(
            state, [priced.amount for priced in run_items], caps=cap_run, spenders=spenders, at=at
        )
        total = state.buckets.total
        for priced, charged in zip(run_items, run.outcomes, strict=True):
            item = items[priced.position]
            if isinstance(charged, BillingError):
                outcomes[priced.position] = Refused(item.unique_code, charged)
                continue
            before = total
            if charged.moves:
                total = charged.moves[-1].total_after_minor
            cap = cap_run.states.get(item.waba_id) if cap_run is not None else None
            capped = capped_part(cap.cap if cap is not None else None, item.category, priced.amount)
            applied = Applied(
                item, package_id, priced.unit_price_minor, priced.market, priced.amount, before, total, charged, capped
            )
            outcomes[priced.position] = applied
            taken[item.unique_code] = applied
            decision.applied.append(applied)
        decision.events[package_id].extend(run.events)
        decision.states[package_id] = run.state
    waiting.clear()


def _repeat(item: A, earlier: Applied[A] | Stored) -> Outcome[A]:
    """A repeated unique_code: the original result if the payload matches, else a conflict."""
    first_hash = earlier.item.payload_hash if isinstance(earlier, Applied) else earlier.payload_hash
    if first_hash != item.payload_hash:
        error = BillingError(
            Rejection.IDEMPOTENCY_CONFLICT,
            "unique_code was already used with a different payload",
            {"unique_code": item.unique_code},
        )
        return Refused(item.unique_code, error)
    if isinstance(earlier, Applied):
        return RepeatInGroup(earlier)
    return Replay(earlier)
