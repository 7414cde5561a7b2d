"""The events a change of a pool raises: low balance, below zero, the company's own alerts, top-up requests.

Each is raised once per crossing (or per cycle); a change that lifts the pool
back above a threshold re-arms it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from wabapool.domain import alerts, thresholds
from wabapool.domain.events import DomainEvent, EventType
from wabapool.domain.operations.state import PoolState, figures
from wabapool.domain.pool import Buckets


def alert_event(state: PoolState, alert: alerts.BalanceAlert) -> DomainEvent:
    return DomainEvent(
        EventType.BALANCE_ALERT,
        {**figures(state), "alert": alert.as_dict(), "funded_this_cycle": state.funded_base_minor},
    )


def request_event(state: PoolState, request: alerts.TopUpRequest, event_type: EventType) -> DomainEvent:
    return DomainEvent(
        event_type,
        {
            **figures(state),
            "amount": request.amount_minor,
            "currency": state.alerting.currency,
            "payment_reference": request.payment_reference,
            "requested_at": request.requested_at.isoformat(),
            "expires_at": request.expires_at.isoformat(),
        },
        dedup_key=f"{state.scope}:{request.payment_reference}",
    )


def watch_of(state: PoolState) -> alerts.Watch | None:
    if state.alerting.is_quiet:
        return None
    return alerts.Watch(
        state.alerting, state.funded_base_minor, state.alerts_fired, state.top_up_request, state.top_ups_requested
    )


def watched(state: PoolState, watch: alerts.Watch, after: Buckets, at: datetime | None) -> list[DomainEvent]:
    """The company's own alerts and its auto-recharge after one change to `after` (state: before it)."""
    events: list[DomainEvent] = []
    crossed = watch.crossed(after.spendable)
    request = watch.recharge(after.available, scope=state.scope, cycle_label=state.cycle_label, at=at)
    if crossed or request is not None:
        now = replace(state, buckets=after, alerts_fired=watch.fired, top_up_request=watch.request)
        events += [alert_event(now, alert) for alert in crossed]
        if request is not None:
            events.append(request_event(now, request, EventType.TOP_UP_REQUESTED))
    return events


def warnings_after(before: PoolState, after: PoolState) -> tuple[PoolState, list[DomainEvent]]:
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
                {**figures(after), "threshold_percent": str(thresholds.effective_threshold(after.threshold_percent))},
            )
        )
    if (
        thresholds.crossed_below_zero(before.buckets, after.buckets)
        and after.below_zero_cycle_start != after.cycle_start
    ):
        after = replace(after, below_zero_cycle_start=after.cycle_start)
        events.append(
            DomainEvent(EventType.BALANCE_BELOW_ZERO, figures(after), dedup_key=f"{after.scope}:{after.cycle_label}")
        )
    if after.alerting.alerts and after.buckets.spendable < before.buckets.spendable:
        # The company's alerts by the same rule as the low warning (auto-recharge answers deductions only).
        watch = alerts.Watch(after.alerting, after.funded_base_minor, after.alerts_fired, None, 0)
        crossed = watch.crossed(after.buckets.spendable)
        if crossed:
            after = replace(after, alerts_fired=watch.fired)
            events += [alert_event(after, alert) for alert in crossed]
    return rearm(after), events


def rearm(state: PoolState) -> PoolState:
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
