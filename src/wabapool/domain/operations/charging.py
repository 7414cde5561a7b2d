"""Deductions: a run of amounts charged one after another through the hierarchy, with the events they raise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NamedTuple

from wabapool.domain import thresholds
from wabapool.domain.caps import CapRun
from wabapool.domain.errors import BillingError
from wabapool.domain.events import DomainEvent, EventType
from wabapool.domain.operations.balance_events import watch_of, watched
from wabapool.domain.operations.state import Change, PoolState, figures
from wabapool.domain.pool import Move, Portion, charge


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
    watch = watch_of(state)
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
                    {**figures(now), "threshold_percent": str(thresholds.effective_threshold(now.threshold_percent))},
                )
            )
        if thresholds.crossed_below_zero(buckets, after) and below_zero_cycle_start != state.cycle_start:
            below_zero_cycle_start = state.cycle_start
            now = replace(state, buckets=after, low_balance_armed=armed)
            events.append(
                DomainEvent(
                    EventType.BALANCE_BELOW_ZERO,
                    figures(now),
                    dedup_key=f"{state.scope}:{state.cycle_label}",
                )
            )
        if watch is not None:
            events += watched(state, watch, after, at)
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


def deduct(state: PoolState, amount_minor: int, *, at: datetime | None = None) -> Change:
    """Charge through the hierarchy; raises `quota_exceeded` and changes nothing if it does not fit."""
    run = deduct_many(state, [amount_minor], at=at)
    outcome = run.outcomes[0]
    if isinstance(outcome, BillingError):
        raise outcome
    return Change(run.state, outcome.moves, run.events, outcome.portions)
