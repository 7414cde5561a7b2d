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

from wabapool.domain import alerts, cycle, thresholds
from wabapool.domain.caps import CapRun
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.events import DomainEvent, EventType
from wabapool.domain.limits import AMOUNT_MAX_MINOR, MAX_CATCH_UP_CYCLES
from wabapool.domain.pool import (
    Buckets,
    Move,
    MoveKind,
    Portion,
    QuotaType,
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
    # Kept, not derived: a change of anchor day or timezone takes effect only at this end (see `cycle`).
    cycle_end: datetime
    anchor_day: int
    timezone: str
    funded_base_minor: int
    low_balance_armed: bool = True
    below_zero_cycle_start: datetime | None = None
    threshold_percent: Decimal | None = None
    # The WABA a package of its own belongs to (v2); None for the company's shared pool.
    waba_id: str | None = None
    # The company's own alerts and auto-recharge (domain.alerts), and where this package stands with them:
    # the alerts fired in their current crossing, the open top-up request, the requests raised this cycle.
    alerting: alerts.Alerting = alerts.NO_ALERTING
    alerts_fired: frozenset[str] = frozenset()
    top_up_request: alerts.TopUpRequest | None = None
    top_ups_requested: int = 0

    @property
    def scope(self) -> str:
        """Whose money this is in event dedup keys: the company's pool, or one WABA's package of a company."""
        return str(self.company_id) if self.waba_id is None else f"{self.company_id}:{self.waba_id}"

    @property
    def cycle_label(self) -> str:
        """The cycle's local start date, e.g. `2026-11-01`: part of event dedup keys."""
        return self.cycle_start.astimezone(ZoneInfo(self.timezone)).date().isoformat()

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
        **({} if state.waba_id is None else {"waba_id": state.waba_id}),
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


def _alert_event(state: PoolState, alert: alerts.BalanceAlert) -> DomainEvent:
    return DomainEvent(
        EventType.BALANCE_ALERT,
        {**_figures(state), "alert": alert.as_dict(), "funded_this_cycle": state.funded_base_minor},
    )


def _request_event(state: PoolState, request: alerts.TopUpRequest, event_type: EventType) -> DomainEvent:
    return DomainEvent(
        event_type,
        {
            **_figures(state),
            "amount": request.amount_minor,
            "currency": state.alerting.currency,
            "payment_reference": request.payment_reference,
            "requested_at": request.requested_at.isoformat(),
            "expires_at": request.expires_at.isoformat(),
        },
        dedup_key=f"{state.scope}:{request.payment_reference}",
    )


def _watch(state: PoolState) -> alerts.Watch | None:
    if state.alerting.is_quiet:
        return None
    return alerts.Watch(
        state.alerting, state.funded_base_minor, state.alerts_fired, state.top_up_request, state.top_ups_requested
    )


def _watched(state: PoolState, watch: alerts.Watch, after: Buckets, at: datetime | None) -> list[DomainEvent]:
    """The company's own alerts and its auto-recharge after one change to `after` (state: before it)."""
    events: list[DomainEvent] = []
    crossed = watch.crossed(after.spendable)
    request = watch.recharge(after.available, scope=state.scope, cycle_label=state.cycle_label, at=at)
    if crossed or request is not None:
        now = replace(state, buckets=after, alerts_fired=watch.fired, top_up_request=watch.request)
        events += [_alert_event(now, alert) for alert in crossed]
        if request is not None:
            events.append(_request_event(now, request, EventType.TOP_UP_REQUESTED))
    return events


def deduct_many(
    state: PoolState,
    amounts: Sequence[int],
    *,
    caps: CapRun | None = None,
    spenders: Sequence[tuple[str, str | None]] = (),
    at: datetime | None = None,
) -> Run:
    """Charge each amount in turn, exactly as repeated `deduct` would; a refused one changes nothing.

    `balance_low` is raised once per crossing and `balance_below_zero` once
    per cycle; so is each of the company's own alerts, and an auto-recharge
    request as its guards allow (`domain.alerts`; `at` is the requests' time).
    Deductions never change the funded base or the threshold, so the bounds
    are computed once for the whole run.

    With `caps`, each amount's (WABA, category) in `spenders` is checked
    against its WABA's spending cap before the pool (`waba_cap_exceeded`
    first, then `quota_exceeded`), and counted against it once charged; the
    caps' events are the CapRun's to give.
    """
    if caps is not None and len(spenders) != len(amounts):
        raise ValueError("with caps, every amount needs its (waba_id, category)")
    bound = thresholds.low_bound(funded_base_minor=state.funded_base_minor, threshold_percent=state.threshold_percent)
    watch = _watch(state)
    buckets = state.buckets
    armed = state.low_balance_armed
    below_zero_cycle_start = state.below_zero_cycle_start
    outcomes: list[Charged | BillingError] = []
    events: list[DomainEvent] = []
    for index, amount_minor in enumerate(amounts):
        if amount_minor == 0:
            outcomes.append(Charged((), []))
            continue
        if caps is not None:
            refused = caps.admit(*spenders[index], amount_minor)
            if refused is not None:
                outcomes.append(refused)
                continue
        try:
            after, portions, moves = charge(buckets, amount_minor)
        except BillingError as error:
            outcomes.append(error)
            continue
        outcomes.append(Charged(portions, moves))
        if caps is not None:
            caps.spent(*spenders[index], amount_minor)
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
                    dedup_key=f"{state.scope}:{state.cycle_label}",
                )
            )
        if watch is not None:
            events += _watched(state, watch, after, at)
        buckets = after
    if buckets is state.buckets:
        return Run(state, outcomes, events)
    final = replace(state, buckets=buckets, low_balance_armed=armed, below_zero_cycle_start=below_zero_cycle_start)
    if watch is not None:
        final = replace(
            final,
            alerts_fired=watch.fired,
            top_up_request=watch.request,
            top_ups_requested=watch.requested_in_cycle,
        )
    return Run(final, outcomes, events)


def check_ceiling(buckets: Buckets) -> None:
    """Refuse a change that would take any figure of the pool past the ceiling on money."""
    if buckets.largest_figure > AMOUNT_MAX_MINOR:
        raise BillingError(
            Rejection.AMOUNT_TOO_LARGE,
            f"the pool's figures must stay at or under {AMOUNT_MAX_MINOR} minor units",
            {"max_minor": AMOUNT_MAX_MINOR},
        )


def check_company_ceiling(packages: Sequence[Buckets]) -> None:
    """Refuse a change that would take a company's summed figures past the ceiling on money.

    A company with several packages (v2: one per WABA) shows their sum in `billings/info`; each figure of
    that sum (total, available, allowance, the credit line) must stay exact in a browser too.
    """
    summed = max(
        sum(b.available for b in packages),
        sum(b.initial_allowance for b in packages),
        sum(b.initial_used for b in packages),
        sum(b.postpaid_limit for b in packages),
    )
    if summed > AMOUNT_MAX_MINOR:
        raise BillingError(
            Rejection.AMOUNT_TOO_LARGE,
            f"the company's figures, summed over its packages, must stay at or under {AMOUNT_MAX_MINOR} minor units",
            {"max_minor": AMOUNT_MAX_MINOR},
        )


def _warnings(before: PoolState, after: PoolState) -> tuple[PoolState, list[DomainEvent]]:
    """Low and below-zero warnings for a change other than a deduction (a lowered allowance, say).

    The same rules as for deductions: `balance_low` once per crossing while
    armed, `balance_below_zero` once per cycle; a change that lifts the pool
    back above the threshold re-arms the low warning.
    """
    events: list[DomainEvent] = []
    if after.low_balance_armed and after.is_low and after.buckets.spendable < before.buckets.spendable:
        after = replace(after, low_balance_armed=False)
        events.append(
            DomainEvent(
                EventType.BALANCE_LOW,
                {**_figures(after), "threshold_percent": str(thresholds.effective_threshold(after.threshold_percent))},
            )
        )
    if (
        thresholds.crossed_below_zero(before.buckets, after.buckets)
        and after.below_zero_cycle_start != after.cycle_start
    ):
        after = replace(after, below_zero_cycle_start=after.cycle_start)
        events.append(
            DomainEvent(EventType.BALANCE_BELOW_ZERO, _figures(after), dedup_key=f"{after.scope}:{after.cycle_label}")
        )
    if after.alerting.alerts and after.buckets.spendable < before.buckets.spendable:
        # The company's alerts by the same rule as the low warning (auto-recharge answers deductions only).
        watch = alerts.Watch(after.alerting, after.funded_base_minor, after.alerts_fired, None, 0)
        crossed = watch.crossed(after.buckets.spendable)
        if crossed:
            after = replace(after, alerts_fired=watch.fired)
            events += [_alert_event(after, alert) for alert in crossed]
    return _rearm(after), events


def _rearm(state: PoolState) -> PoolState:
    """A funding that lifts the pool back above the threshold arms the next warning (and each alert above)."""
    if not state.low_balance_armed and not state.is_low:
        state = replace(state, low_balance_armed=True)
    if state.alerts_fired:
        fired = alerts.rearmed(
            state.alerting.alerts,
            state.alerts_fired,
            spendable_minor=state.buckets.spendable,
            funded_base_minor=state.funded_base_minor,
        )
        if fired != state.alerts_fired:
            state = replace(state, alerts_fired=fired)
    return state


def deduct(state: PoolState, amount_minor: int, *, at: datetime | None = None) -> Change:
    """Charge through the hierarchy; raises `quota_exceeded` and changes nothing if it does not fit."""
    run = deduct_many(state, [amount_minor], at=at)
    outcome = run.outcomes[0]
    if isinstance(outcome, BillingError):
        raise outcome
    return Change(run.state, outcome.moves, run.events, outcome.portions)


def refund(state: PoolState, taken: Sequence[Portion], *, taken_cycle_start: datetime) -> Change:
    """Give a deduction's portions back, last taken first.

    Allowance taken this cycle comes back by lowering `used`: it is spendable
    again only as far as the allowance in force covers it (after a lowered
    plan, possibly not at all). The change's portions are what was credited.
    """
    buckets = state.buckets
    credited: list[Portion] = []
    moves: list[Move] = []
    for portion in refund_portions(buckets, taken, same_cycle=taken_cycle_start == state.cycle_start):
        amount_minor = portion.amount_minor
        if portion.quota_type is QuotaType.INITIAL:
            used = max(buckets.initial_used - amount_minor, 0)
            buckets = buckets._replace(initial_used=used)
            amount_minor = max(buckets.initial_allowance - used, 0) - buckets.initial_remaining
            if amount_minor <= 0:
                continue
        buckets, entry = move(buckets, MoveKind.REFUND, portion.quota_type, amount_minor)
        moves.append(entry)
        credited.append(Portion(portion.quota_type, amount_minor))
    check_ceiling(buckets)  # a pool topped up to the ceiling since the deduction cannot take it back
    return Change(replace(state, buckets=buckets), moves, [], tuple(credited))


def _funded(
    state: PoolState, amount_minor: int, *, kind: MoveKind, event_type: EventType, payment_reference: str
) -> Change:
    """Pay off postpaid use first, the rest to `additional`; the credited part funds this cycle."""
    buckets, moves, credited = fund(state.buckets, amount_minor, kind)
    check_ceiling(buckets)
    request = state.top_up_request
    if kind is MoveKind.TOP_UP and request is not None and request.payment_reference == payment_reference:
        request = None  # the payments system paid the auto-recharge request: it is closed
    after = _rearm(
        replace(state, buckets=buckets, funded_base_minor=state.funded_base_minor + credited, top_up_request=request)
    )
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
    """A paid postpaid bill lowers `used`; more than postpaid has used is refused (`settlement_exceeds_used`).

    A settlement pays a bill, it is not a top-up: an excess credited to
    `additional` would turn an overpayment into spendable money unnoticed.
    """
    used = state.buckets.postpaid_used
    if amount_minor > used:
        raise BillingError(
            Rejection.SETTLEMENT_EXCEEDS_USED,
            "the settlement is larger than what postpaid has used",
            {"amount": amount_minor, "postpaid_used": max(used, 0)},
        )
    return _funded(
        state,
        amount_minor,
        kind=MoveKind.SETTLEMENT,
        event_type=EventType.POSTPAID_SETTLED,
        payment_reference=payment_reference,
    )


def _reset_to(state: PoolState, new_start: datetime, new_end: datetime) -> Change:
    """Start a cycle: the allowance is granted again (nothing used yet), unused allowance expires."""
    buckets = state.buckets
    moves: list[Move] = []
    delta = buckets.initial_allowance - buckets.initial_remaining
    if delta:
        buckets, entry = move(buckets, MoveKind.RESET, QuotaType.INITIAL, delta)
        moves.append(entry)
    buckets = buckets._replace(initial_used=0)
    after = replace(
        state,
        buckets=buckets,
        cycle_start=new_start,
        cycle_end=new_end,
        funded_base_minor=buckets.initial_allowance + max(buckets.additional_remaining, 0),
        low_balance_armed=True,
        alerts_fired=frozenset(),
        top_ups_requested=0,
    )
    event = DomainEvent(EventType.CYCLE_RESET, _figures(after), dedup_key=f"{state.scope}:{after.cycle_label}")
    return Change(after, moves, [event])


def catch_up(state: PoolState, at: datetime) -> Change:
    """Reset once for every cycle that started by `at`; nothing if the cycle is current."""
    cycles = cycle.missed_cycles(
        state.cycle_end,
        at,
        anchor_day=state.anchor_day,
        timezone=state.timezone,
        limit=MAX_CATCH_UP_CYCLES,
    )
    moves: list[Move] = []
    events: list[DomainEvent] = []
    for start, end in cycles:
        step = _reset_to(state, start, end)
        state = step.state
        moves += step.moves
        events += step.events
    return Change(state, moves, events)


def adjust_allowance(state: PoolState, allowance_minor: int) -> Change:
    """A changed plan applies now, by the rule (allowance, used this cycle) of `pool`.

    `remaining` becomes `max(0, allowance - used)`: raising the allowance grants
    the difference, lowering it takes back only what is unused. The funded base
    moves by what was granted or taken back; the warnings follow the new figures.
    """
    buckets = state.buckets._replace(initial_allowance=allowance_minor)
    granted = max(allowance_minor - buckets.initial_used, 0) - buckets.initial_remaining
    moves: list[Move] = []
    if granted:
        buckets, entry = move(buckets, MoveKind.ADJUSTMENT, QuotaType.INITIAL, granted)
        moves.append(entry)
    check_ceiling(buckets)
    adjusted = replace(state, buckets=buckets, funded_base_minor=max(state.funded_base_minor + granted, 0))
    after, events = _warnings(state, adjusted)
    return Change(after, moves, events)


def set_postpaid_limit(state: PoolState, limit_minor: int) -> Change:
    """A new credit line; never under what postpaid has already used (the pool may not owe past its limit)."""
    used = state.buckets.postpaid_used
    if limit_minor < used:
        raise BillingError(
            Rejection.INVALID_REQUEST,
            "postpaid_limit is under what postpaid has already used",
            {"field": "package.postpaid_limit", "postpaid_used": used},
        )
    buckets = state.buckets._replace(postpaid_limit=limit_minor)
    check_ceiling(buckets)
    return Change(replace(state, buckets=buckets))


def open_pool(
    *,
    company_id: int,
    allowance_minor: int,
    postpaid_limit_minor: int,
    anchor_day: int,
    timezone: str,
    threshold_percent: Decimal | None,
    at: datetime,
    waba_id: str | None = None,
) -> Change:
    """A new pool (or a WABA's own package: `waba_id`): the first cycle starts with its allowance granted."""
    start, end = cycle.cycle_bounds(at, anchor_day=anchor_day, timezone=timezone)
    empty = PoolState(
        company_id=company_id,
        buckets=Buckets(initial_allowance=allowance_minor, postpaid_limit=postpaid_limit_minor),
        cycle_start=start,
        cycle_end=end,
        anchor_day=anchor_day,
        timezone=timezone,
        funded_base_minor=0,
        threshold_percent=threshold_percent,
        waba_id=waba_id,
    )
    check_ceiling(empty.buckets)
    buckets, moves = empty.buckets, []
    if allowance_minor:
        buckets, entry = move(buckets, MoveKind.RESET, QuotaType.INITIAL, allowance_minor)
        moves.append(entry)
    return Change(replace(empty, buckets=buckets, funded_base_minor=allowance_minor), moves)


def expire_top_up_request(state: PoolState, at: datetime) -> Change:
    """An auto-recharge request open for `TOP_UP_REQUEST_OPEN_FOR` is reported expired and closed.

    Its number in the cycle still counts against `max_per_cycle`; the next
    deduction under `below` may raise a new one.
    """
    request = state.top_up_request
    if request is None or not request.is_expired(at):
        return Change(state)
    after = replace(state, top_up_request=None)
    return Change(after, [], [_request_event(after, request, EventType.TOP_UP_REQUEST_EXPIRED)])
