"""Money coming back into a pool: refunds, top-ups, postpaid settlements; and the auto-recharge request's expiry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.events import DomainEvent, EventType
from wabapool.domain.operations.balance_events import rearm, request_event
from wabapool.domain.operations.state import Change, PoolState, check_ceiling, figures
from wabapool.domain.pool import Move, MoveKind, Portion, QuotaType, fund, move
from wabapool.domain.refunds import refund_portions


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
    after = rearm(
        replace(state, buckets=buckets, funded_base_minor=state.funded_base_minor + credited, top_up_request=request)
    )
    event = DomainEvent(
        event_type,
        {**figures(after), "amount": amount_minor, "payment_reference": payment_reference},
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


def expire_top_up_request(state: PoolState, at: datetime) -> Change:
    """An auto-recharge request open for `TOP_UP_REQUEST_OPEN_FOR` is reported expired and closed.

    Its number in the cycle still counts against `max_per_cycle`; the next
    deduction under `below` may raise a new one.
    """
    request = state.top_up_request
    if request is None or not request.is_expired(at):
        return Change(state)
    after = replace(state, top_up_request=None)
    return Change(after, [], [request_event(after, request, EventType.TOP_UP_REQUEST_EXPIRED)])
