"""Every change of a pool as a pure function: state in, new state + moves + events out.

The service layer loads a `PoolState`, runs these in memory (one or many per
transaction) and writes what they return; nothing here touches I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

from wabapool.domain import cycle, thresholds
from wabapool.domain.errors import BillingError
from wabapool.domain.events import DomainEvent, EventType
from wabapool.domain.limits import MAX_CATCH_UP_CYCLES
from wabapool.domain.pool import (
    Buckets,
    Move,
    MoveKind,
    Portion,
    QuotaType,
    apply_portions,
    charge,
    fund,
    move,
)
from wabapool.domain.refunds import refund_portions


@dataclass(frozen=True, slots=True)
class PoolState:
    company_id: int
    buckets: Buckets
    cycle_start: datetime
    anchor_day: int
    timezone: str
    funded_base_minor: int
    low_balance_armed: bool = True
    below_zero_cycle_start: datetime | None = None
    threshold_percent: Decimal | None = None

    @property
    def cycle_label(self) -> str:
        """The cycle's local start date, e.g. `2026-11-01`: part of event dedup keys."""
        return self.cycle_start.astimezone(ZoneInfo(self.timezone)).date().isoformat()

    @property
    def cycle_end(self) -> datetime:
        return cycle.next_cycle_start(self.cycle_start, anchor_day=self.anchor_day, timezone=self.timezone)

    @property
    def is_low(self) -> bool:
        return thresholds.is_low(
            self.buckets,
            funded_base_minor=self.funded_base_minor,
            threshold_percent=self.threshold_percent,
        )

    @property
    def is_below_zero(self) -> bool:
        return self.buckets.total < 0


@dataclass(frozen=True, slots=True)
class Change:
    state: PoolState
    moves: list[Move] = field(default_factory=list)
    events: list[DomainEvent] = field(default_factory=list)
    portions: tuple[Portion, ...] = ()


def _figures(state: PoolState) -> dict[str, object]:
    buckets = state.buckets
    return {
        "company_id": state.company_id,
        "cycle": state.cycle_label,
        "total": buckets.total,
        "available": buckets.available,
        "initial_remaining": buckets.initial_remaining,
        "additional_remaining": buckets.additional_remaining,
        "postpaid_used": buckets.postpaid_used,
        "postpaid_limit": buckets.postpaid_limit,
    }


class Charged(NamedTuple):
    """One deduction of a run: what each bucket carried, and its ledger moves (a NamedTuple: one per deduction)."""

    portions: tuple[Portion, ...]
    moves: list[Move]


@dataclass(frozen=True, slots=True)
class Run:
    """Deductions applied one after another: the final state, each one's outcome in order, the events raised."""

    state: PoolState
    outcomes: list[Charged | BillingError]
    events: list[DomainEvent]


def deduct_many(state: PoolState, amounts: Sequence[int]) -> Run:
    """Charge each amount in turn, exactly as repeated `deduct` would; a refused one changes nothing.

    `balance_low` is raised once per crossing and `balance_below_zero` once
    per cycle. Deductions never change the funded base or the threshold, so
    the low bound is computed once for the whole run.
    """
    bound = thresholds.low_bound(funded_base_minor=state.funded_base_minor, threshold_percent=state.threshold_percent)
    buckets = state.buckets
    armed = state.low_balance_armed
    below_zero_cycle_start = state.below_zero_cycle_start
    outcomes: list[Charged | BillingError] = []
    events: list[DomainEvent] = []
    for amount_minor in amounts:
        if amount_minor == 0:
            outcomes.append(Charged((), []))
            continue
        try:
            after, portions, moves = charge(buckets, amount_minor)
        except BillingError as error:
            outcomes.append(error)
            continue
        outcomes.append(Charged(portions, moves))
        if armed and after.spendable <= bound:
            armed = False
            now = replace(state, buckets=after, low_balance_armed=False)
            events.append(
                DomainEvent(
                    EventType.BALANCE_LOW,
                    {**_figures(now), "threshold_percent": str(thresholds.effective_threshold(now.threshold_percent))},
                )
            )
        if thresholds.crossed_below_zero(buckets, after) and below_zero_cycle_start != state.cycle_start:
            below_zero_cycle_start = state.cycle_start
            now = replace(state, buckets=after, low_balance_armed=armed)
            events.append(
                DomainEvent(
                    EventType.BALANCE_BELOW_ZERO,
                    _figures(now),
                    dedup_key=f"{state.company_id}:{state.cycle_label}",
                )
            )
        buckets = after
    if buckets is state.buckets:
        return Run(state, outcomes, events)
    final = replace(state, buckets=buckets, low_balance_armed=armed, below_zero_cycle_start=below_zero_cycle_start)
    return Run(final, outcomes, events)


def _rearm(state: PoolState) -> PoolState:
    """A funding that lifts the pool back above the threshold arms the next warning."""
    if not state.low_balance_armed and not state.is_low:
        return replace(state, low_balance_armed=True)
    return state


def deduct(state: PoolState, amount_minor: int) -> Change:
    """Charge through the hierarchy; raises `quota_exceeded` and changes nothing if it does not fit."""
    run = deduct_many(state, [amount_minor])
    outcome = run.outcomes[0]
    if isinstance(outcome, BillingError):
        raise outcome
    return Change(run.state, outcome.moves, run.events, outcome.portions)


def refund(state: PoolState, taken: Sequence[Portion], *, taken_cycle_start: datetime) -> Change:
    """Give a deduction's portions back, last taken first."""
    credits = refund_portions(state.buckets, taken, same_cycle=taken_cycle_start == state.cycle_start)
    buckets, moves = apply_portions(state.buckets, credits, MoveKind.REFUND, sign=+1)
    return Change(replace(state, buckets=buckets), moves, [], tuple(credits))


def _funded(
    state: PoolState, amount_minor: int, *, kind: MoveKind, event_type: EventType, payment_reference: str
) -> Change:
    """Pay off postpaid use first, the rest to `additional`; the credited part funds this cycle."""
    buckets, moves, credited = fund(state.buckets, amount_minor, kind)
    after = _rearm(replace(state, buckets=buckets, funded_base_minor=state.funded_base_minor + credited))
    event = DomainEvent(
        event_type,
        {**_figures(after), "amount": amount_minor, "payment_reference": payment_reference},
        dedup_key=f"{state.company_id}:{payment_reference}",
    )
    return Change(after, moves, [event])


def top_up(state: PoolState, amount_minor: int, *, payment_reference: str) -> Change:
    """A top-up: postpaid use is paid off first, the rest credits `additional`."""
    return _funded(
        state,
        amount_minor,
        kind=MoveKind.TOP_UP,
        event_type=EventType.BALANCE_TOPPED_UP,
        payment_reference=payment_reference,
    )


def settle_postpaid(state: PoolState, amount_minor: int, *, payment_reference: str) -> Change:
    """A paid postpaid bill lowers `used`; any excess is credited to `additional`."""
    return _funded(
        state,
        amount_minor,
        kind=MoveKind.SETTLEMENT,
        event_type=EventType.POSTPAID_SETTLED,
        payment_reference=payment_reference,
    )


def _reset_to(state: PoolState, new_start: datetime) -> Change:
    """Start a cycle: the allowance is granted again, unused allowance expires."""
    buckets = state.buckets
    moves: list[Move] = []
    delta = buckets.initial_allowance - buckets.initial_remaining
    if delta:
        buckets, entry = move(buckets, MoveKind.RESET, QuotaType.INITIAL, delta)
        moves.append(entry)
    after = replace(
        state,
        buckets=buckets,
        cycle_start=new_start,
        funded_base_minor=buckets.initial_allowance + max(buckets.additional_remaining, 0),
        low_balance_armed=True,
    )
    event = DomainEvent(EventType.CYCLE_RESET, _figures(after), dedup_key=f"{state.company_id}:{after.cycle_label}")
    return Change(after, moves, [event])


def catch_up(state: PoolState, at: datetime) -> Change:
    """Reset once for every cycle that started by `at`; nothing if the cycle is current."""
    starts = cycle.missed_cycle_starts(
        state.cycle_start,
        at,
        anchor_day=state.anchor_day,
        timezone=state.timezone,
        limit=MAX_CATCH_UP_CYCLES,
    )
    moves: list[Move] = []
    events: list[DomainEvent] = []
    for start in starts:
        step = _reset_to(state, start)
        state = step.state
        moves += step.moves
        events += step.events
    return Change(state, moves, events)


def adjust_allowance(state: PoolState, allowance_minor: int) -> Change:
    """A changed plan applies now: remaining moves by the difference (never under zero)."""
    buckets = state.buckets
    delta = allowance_minor - buckets.initial_allowance
    buckets = buckets._replace(initial_allowance=allowance_minor)
    target = max(buckets.initial_remaining + delta, 0)
    moves: list[Move] = []
    if target != buckets.initial_remaining:
        buckets, entry = move(buckets, MoveKind.ADJUSTMENT, QuotaType.INITIAL, target - buckets.initial_remaining)
        moves.append(entry)
    base = max(state.funded_base_minor + delta, 0)
    return Change(replace(state, buckets=buckets, funded_base_minor=base), moves)


def open_pool(
    *,
    company_id: int,
    allowance_minor: int,
    postpaid_limit_minor: int,
    anchor_day: int,
    timezone: str,
    threshold_percent: Decimal | None,
    at: datetime,
) -> Change:
    """A new pool: the first cycle starts with its allowance granted."""
    start = cycle.cycle_start(at, anchor_day=anchor_day, timezone=timezone)
    empty = PoolState(
        company_id=company_id,
        buckets=Buckets(initial_allowance=allowance_minor, postpaid_limit=postpaid_limit_minor),
        cycle_start=start,
        anchor_day=anchor_day,
        timezone=timezone,
        funded_base_minor=0,
        threshold_percent=threshold_percent,
    )
    buckets, moves = empty.buckets, []
    if allowance_minor:
        buckets, entry = move(buckets, MoveKind.RESET, QuotaType.INITIAL, allowance_minor)
        moves.append(entry)
    return Change(replace(empty, buckets=buckets, funded_base_minor=allowance_minor), moves)
