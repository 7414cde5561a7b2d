"""A pool's life: opened with its first cycle, reset at each cycle's end, its plan and credit line changed."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from wabapool.domain import cycle
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.events import DomainEvent, EventType
from wabapool.domain.limits import MAX_CATCH_UP_CYCLES
from wabapool.domain.operations.balance_events import warnings_after
from wabapool.domain.operations.state import Change, PoolState, check_ceiling, figures
from wabapool.domain.pool import Buckets, Move, MoveKind, QuotaType, move


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
    event = DomainEvent(EventType.CYCLE_RESET, figures(after), dedup_key=f"{state.scope}:{after.cycle_label}")
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
    after, events = warnings_after(state, adjusted)
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
