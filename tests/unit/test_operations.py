"""Pool changes as pure functions: new state, ledger moves and the events they raise."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.builders import (
    COMPANY_ID,
    DECEMBER_START,
    NOVEMBER_START,
    opened_pool,
    pool_state,
    utc,
)
from wabapool.domain import operations
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.events import DomainEvent, EventType
from wabapool.domain.operations import Change, PoolState
from wabapool.domain.pool import Move, MoveKind, Portion, QuotaType

INITIAL, ADDITIONAL, POSTPAID = QuotaType.INITIAL, QuotaType.ADDITIONAL, QuotaType.POSTPAID


def types(change: Change) -> list[EventType]:
    return [event.event_type for event in change.events]


def only(change: Change, event_type: EventType) -> DomainEvent:
    matching = [event for event in change.events if event.event_type is event_type]
    assert len(matching) == 1, change.events
    return matching[0]


# --- opening a pool ---------------------------------------------------------------------------


def test_a_new_pool_starts_its_first_cycle_with_the_allowance_granted_and_recorded() -> None:
    change = operations.open_pool(
        company_id=COMPANY_ID,
        allowance_minor=1000,
        postpaid_limit_minor=500,
        anchor_day=1,
        timezone="Asia/Jakarta",
        threshold_percent=None,
        at=utc(2026, 11, 10, 3, 0),
    )
    state = change.state
    assert state.cycle_start == NOVEMBER_START
    assert state.cycle_label == "2026-11-01"
    assert state.cycle_end == DECEMBER_START
    assert state.buckets.initial_allowance == state.buckets.initial_remaining == 1000
    assert state.buckets.postpaid_limit == 500 and state.buckets.postpaid_used == 0
    assert state.funded_base_minor == 1000
    assert state.low_balance_armed and state.below_zero_cycle_start is None
    assert change.moves == [Move(MoveKind.RESET, INITIAL, 1000, 0, 1000, 0, 1000)]


def test_a_pool_without_allowance_opens_with_no_moves() -> None:
    change = operations.open_pool(
        company_id=COMPANY_ID,
        allowance_minor=0,
        postpaid_limit_minor=500,
        anchor_day=1,
        timezone="Asia/Jakarta",
        threshold_percent=None,
        at=utc(2026, 11, 10),
    )
    assert change.moves == [] and change.state.buckets.available == 500


# --- deduction --------------------------------------------------------------------------------


def test_deduction_of_exactly_available_succeeds_and_one_more_unit_is_quota_exceeded() -> None:
    state = pool_state(initial=1000, additional=200, postpaid_limit=500, postpaid_used=100)
    assert state.buckets.available == 1600

    with pytest.raises(BillingError) as raised:
        operations.deduct(state, 1601)
    assert raised.value.code is Rejection.QUOTA_EXCEEDED
    # Nothing changed: the state is immutable and still the one we had.
    assert state == pool_state(initial=1000, additional=200, postpaid_limit=500, postpaid_used=100)

    change = operations.deduct(state, 1600)
    assert change.state.buckets.available == 0
    assert change.state.buckets.total == -500
    assert change.portions == (Portion(INITIAL, 1000), Portion(ADDITIONAL, 200), Portion(POSTPAID, 400))

    with pytest.raises(BillingError) as again:
        operations.deduct(change.state, 1)
    assert again.value.code is Rejection.QUOTA_EXCEEDED


def test_deduction_split_over_all_three_buckets_records_a_move_per_portion() -> None:
    state = pool_state(initial_allowance=100, initial=100, additional=50, postpaid_limit=30)
    change = operations.deduct(state, 170)
    assert change.portions == (Portion(INITIAL, 100), Portion(ADDITIONAL, 50), Portion(POSTPAID, 20))
    assert change.moves == [
        Move(MoveKind.DEDUCTION, INITIAL, -100, 100, 0, 150, 50),
        Move(MoveKind.DEDUCTION, ADDITIONAL, -50, 50, 0, 50, 0),
        Move(MoveKind.DEDUCTION, POSTPAID, -20, 0, 20, 0, -20),
    ]
    assert change.portions[0].credited_to == "wa_balance_initial"


def test_a_free_deduction_takes_nothing_and_raises_nothing() -> None:
    state = pool_state(initial=0, additional=0, postpaid_limit=0, funded_base=0)
    change = operations.deduct(state, 0)
    assert change.state is state
    assert (change.moves, change.events, change.portions) == ([], [], ())


# --- balance_low ------------------------------------------------------------------------------


def test_balance_low_is_raised_when_a_deduction_reaches_exactly_the_threshold() -> None:
    state = opened_pool(allowance=1000)  # NULL threshold: 40% of 1000 = 400

    above = operations.deduct(state, 599)  # 401 left
    assert types(above) == []
    assert above.state.low_balance_armed

    at_boundary = operations.deduct(above.state, 1)  # 400 left
    event = only(at_boundary, EventType.BALANCE_LOW)
    assert event.payload["threshold_percent"] == "40"
    assert event.payload["company_id"] == COMPANY_ID
    assert event.payload["cycle"] == "2026-11-01"
    assert event.payload["initial_remaining"] == 400
    assert "waba_id" not in event.payload  # company-level, never per WABA
    assert at_boundary.state.low_balance_armed is False


def test_balance_low_uses_a_decimal_threshold_from_the_billing_component() -> None:
    state = opened_pool(allowance=1000, threshold=Decimal("12.50"))  # 125
    assert types(operations.deduct(state, 874)) == []  # 126 left
    change = operations.deduct(state, 875)  # 125 left
    assert only(change, EventType.BALANCE_LOW).payload["threshold_percent"] == "12.50"


def test_balance_low_is_raised_once_per_crossing_not_on_every_deduction_below() -> None:
    state = opened_pool(allowance=1000)
    first = operations.deduct(state, 600)
    assert types(first) == [EventType.BALANCE_LOW]
    second = operations.deduct(first.state, 100)
    third = operations.deduct(second.state, 100)
    assert types(second) == types(third) == []


def test_balance_low_is_rearmed_by_a_top_up_that_lifts_the_pool_above_and_raised_again_on_the_next_crossing() -> None:
    state = opened_pool(allowance=1000, postpaid_limit=0)
    low = operations.deduct(state, 601)  # 399 of 1000: low, warned
    assert types(low) == [EventType.BALANCE_LOW]
    assert low.state.low_balance_armed is False

    # A top-up that leaves the pool low does not re-arm: 400 of 1001 is still <= 400.4.
    small = operations.top_up(low.state, 1, payment_reference="pay-small")
    assert small.state.is_low and small.state.low_balance_armed is False
    still_low = operations.deduct(small.state, 1)  # 399 left
    assert types(still_low) == []

    # A top-up that lifts it above the threshold re-arms: 899 of 1501, threshold 600.4.
    lifted = operations.top_up(still_low.state, 500, payment_reference="pay-big")
    assert not lifted.state.is_low and lifted.state.low_balance_armed is True
    assert types(lifted) == [EventType.BALANCE_TOPPED_UP]

    not_yet = operations.deduct(lifted.state, 298)  # 601 left: above 600.4
    assert types(not_yet) == []
    crossing = operations.deduct(not_yet.state, 1)  # 600 left: low again
    assert types(crossing) == [EventType.BALANCE_LOW]
    assert crossing.state.low_balance_armed is False


def test_a_settlement_pays_the_bill_only_so_it_never_rearms_balance_low() -> None:
    state = pool_state(initial=0, additional=0, postpaid_limit=500, postpaid_used=100, funded_base=1000, armed=False)
    settled = operations.settle_postpaid(state, 100, payment_reference="bill-1")
    assert settled.state.buckets.postpaid_used == 0
    assert settled.state.buckets.spendable == 0
    assert settled.state.is_low and settled.state.low_balance_armed is False


def test_a_cycle_reset_rearms_balance_low() -> None:
    low = operations.deduct(opened_pool(allowance=1000), 600).state
    assert low.low_balance_armed is False
    december = operations.catch_up(low, utc(2026, 12, 2))
    assert december.state.low_balance_armed is True
    assert types(operations.deduct(december.state, 600)) == [EventType.BALANCE_LOW]


# --- balance_below_zero -----------------------------------------------------------------------


def test_balance_below_zero_is_raised_when_the_total_goes_under_zero_with_the_cycle_dedup_key() -> None:
    state = opened_pool(allowance=100, postpaid_limit=500)
    to_zero = operations.deduct(state, 100)
    assert to_zero.state.buckets.total == 0
    assert EventType.BALANCE_BELOW_ZERO not in types(to_zero)

    under = operations.deduct(to_zero.state, 1)
    event = only(under, EventType.BALANCE_BELOW_ZERO)
    assert event.dedup_key == f"{COMPANY_ID}:2026-11-01"
    assert event.payload["total"] == -1
    assert under.state.below_zero_cycle_start == NOVEMBER_START


def test_balance_below_zero_is_raised_at_most_once_per_cycle_however_often_the_pool_crosses_zero() -> None:
    state = opened_pool(allowance=100, postpaid_limit=500)
    first = operations.deduct(state, 150)  # total -50
    assert EventType.BALANCE_BELOW_ZERO in types(first)

    back = operations.top_up(first.state, 100, payment_reference="pay-1")  # pays 50 postpaid, credits 50
    assert back.state.buckets.total == 50
    assert back.state.buckets.postpaid_used == 0

    again = operations.deduct(back.state, 100)  # total -50 again, same cycle
    assert again.state.buckets.total == -50
    assert EventType.BALANCE_BELOW_ZERO not in types(again)

    # A new cycle may warn again, under that cycle's dedup key.
    december = operations.catch_up(again.state, utc(2026, 12, 1, 0, 0))
    assert [e.event_type for e in december.events] == [EventType.CYCLE_RESET]
    assert december.state.buckets.total == 50  # allowance 100 granted again, postpaid used 50
    next_cycle = operations.deduct(december.state, 51)
    event = only(next_cycle, EventType.BALANCE_BELOW_ZERO)
    assert event.dedup_key == f"{COMPANY_ID}:2026-12-01"


def test_a_deduction_that_starts_below_zero_does_not_raise_below_zero() -> None:
    state = pool_state(initial=0, additional=0, postpaid_limit=500, postpaid_used=10, funded_base=1000, armed=False)
    change = operations.deduct(state, 5)
    assert change.state.buckets.total == -15
    assert types(change) == []
    assert change.state.below_zero_cycle_start is None


def test_one_deduction_can_raise_balance_low_and_balance_below_zero_together() -> None:
    change = operations.deduct(opened_pool(allowance=1000, postpaid_limit=500), 1200)
    assert types(change) == [EventType.BALANCE_LOW, EventType.BALANCE_BELOW_ZERO]


# --- top-up and settlement --------------------------------------------------------------------


def test_top_up_pays_postpaid_used_first_then_credits_additional() -> None:
    state = pool_state(initial=0, additional=0, postpaid_limit=500, postpaid_used=300, funded_base=1000)

    change = operations.top_up(state, 1000, payment_reference="pay-42")

    assert change.moves == [
        Move(MoveKind.TOP_UP, POSTPAID, 300, 300, 0, -300, 0),
        Move(MoveKind.TOP_UP, ADDITIONAL, 700, 0, 700, 0, 700),
    ]
    assert change.state.buckets.postpaid_used == 0
    assert change.state.buckets.additional_remaining == 700
    # Only the credited part is new prepaid money this cycle.
    assert change.state.funded_base_minor == 1700
    event = only(change, EventType.BALANCE_TOPPED_UP)
    assert event.dedup_key == f"{COMPANY_ID}:pay-42"
    assert event.payload["amount"] == 1000
    assert event.payload["payment_reference"] == "pay-42"
    assert event.payload["total"] == 700


def test_top_up_smaller_than_postpaid_used_only_pays_it_down() -> None:
    state = pool_state(initial=0, additional=0, postpaid_limit=500, postpaid_used=300, funded_base=1000)
    change = operations.top_up(state, 100, payment_reference="pay-1")
    assert [(m.quota_type, m.amount_minor) for m in change.moves] == [(POSTPAID, 100)]
    assert change.state.buckets.postpaid_used == 200
    assert change.state.funded_base_minor == 1000


def test_settlement_lowers_postpaid_used_and_credits_nothing_else() -> None:
    state = pool_state(initial=0, additional=0, postpaid_limit=500, postpaid_used=300, funded_base=1000)

    change = operations.settle_postpaid(state, 300, payment_reference="bill-7")

    assert change.moves == [Move(MoveKind.SETTLEMENT, POSTPAID, 300, 300, 0, -300, 0)]
    event = only(change, EventType.POSTPAID_SETTLED)
    assert event.dedup_key == f"{COMPANY_ID}:bill-7"
    assert types(change) == [EventType.POSTPAID_SETTLED]


@pytest.mark.parametrize(("used", "amount"), [(300, 301), (0, 1)])
def test_a_settlement_larger_than_what_postpaid_used_is_refused(used: int, amount: int) -> None:
    state = pool_state(initial=0, additional=0, postpaid_limit=500, postpaid_used=used, funded_base=1000)
    with pytest.raises(BillingError) as refused:
        operations.settle_postpaid(state, amount, payment_reference="bill-8")
    assert refused.value.code is Rejection.SETTLEMENT_EXCEEDS_USED


def test_funding_never_raises_low_or_below_zero_events() -> None:
    state = pool_state(initial=0, additional=0, postpaid_limit=500, postpaid_used=300, funded_base=1000)
    assert types(operations.top_up(state, 10, payment_reference="p")) == [EventType.BALANCE_TOPPED_UP]


# --- cycle catch-up ---------------------------------------------------------------------------


def test_catch_up_is_idempotent_when_the_cycle_is_current() -> None:
    state = opened_pool()
    change = operations.catch_up(state, utc(2026, 11, 30, 16, 59, 59))
    assert change.state == state
    assert (change.moves, change.events) == ([], [])


def test_catch_up_resets_the_allowance_and_unused_allowance_does_not_roll_over() -> None:
    state = pool_state(initial_allowance=1000, initial=1000, additional=250)
    change = operations.catch_up(state, DECEMBER_START)
    assert change.state.buckets.initial_remaining == 1000  # not 2000
    assert change.state.buckets.additional_remaining == 250
    assert change.moves == []  # nothing to change in the bucket
    assert types(change) == [EventType.CYCLE_RESET]


def test_catch_up_over_several_missed_cycles_emits_one_cycle_reset_per_cycle() -> None:
    state = opened_pool(allowance=1000, postpaid_limit=500)
    spent = operations.deduct(state, 1300).state  # initial 0, postpaid used 300
    topped = operations.top_up(spent, 500, payment_reference="pay-1").state  # used 0, additional 200

    change = operations.catch_up(topped, utc(2027, 2, 10))

    assert types(change) == [EventType.CYCLE_RESET] * 3
    assert [event.payload["cycle"] for event in change.events] == ["2026-12-01", "2027-01-01", "2027-02-01"]
    assert [event.dedup_key for event in change.events] == [
        f"{COMPANY_ID}:2026-12-01",
        f"{COMPANY_ID}:2027-01-01",
        f"{COMPANY_ID}:2027-02-01",
    ]
    # Only the first reset changes the bucket; the later ones find the allowance already granted.
    assert change.moves == [Move(MoveKind.RESET, INITIAL, 1000, 0, 1000, 200, 1200)]
    after = change.state
    assert after.cycle_start == utc(2027, 1, 31, 17, 0)
    assert after.cycle_label == "2027-02-01"
    assert after.buckets.initial_remaining == 1000
    assert after.buckets.additional_remaining == 200  # top-up credit carries over
    assert after.funded_base_minor == 1200  # allowance + additional carried in
    assert after.low_balance_armed is True

    assert operations.catch_up(after, utc(2027, 2, 10)).events == []


def test_catch_up_resets_a_partly_used_allowance_back_to_the_full_allowance() -> None:
    state = pool_state(initial_allowance=1000, initial=350)
    change = operations.catch_up(state, DECEMBER_START + timedelta(days=3))
    assert change.moves == [Move(MoveKind.RESET, INITIAL, 650, 350, 1000, 350, 1000)]
    assert change.state.cycle_start == DECEMBER_START


def test_catch_up_on_an_anchor_31_pool_steps_through_the_clamped_february() -> None:
    state = opened_pool(anchor_day=31, at=utc(2027, 1, 31, 5, 0))
    assert state.cycle_label == "2027-01-31"
    change = operations.catch_up(state, utc(2027, 4, 1))
    assert [event.payload["cycle"] for event in change.events] == ["2027-02-28", "2027-03-31"]


def test_catch_up_refuses_more_missed_cycles_than_the_limit() -> None:
    with pytest.raises(ValueError):
        operations.catch_up(opened_pool(), utc(2040, 1, 1))


# --- allowance change -------------------------------------------------------------------------


def test_raising_the_allowance_mid_cycle_adds_the_difference_now() -> None:
    state = pool_state(initial_allowance=1000, initial=400, funded_base=1000)
    change = operations.adjust_allowance(state, 1500)
    assert change.state.buckets.initial_allowance == 1500
    assert change.state.buckets.initial_remaining == 900
    assert change.state.funded_base_minor == 1500
    assert change.moves == [Move(MoveKind.ADJUSTMENT, INITIAL, 500, 400, 900, 400, 900)]


def test_lowering_the_allowance_mid_cycle_takes_back_only_the_unused_part() -> None:
    state = pool_state(initial_allowance=1000, initial=100, funded_base=1000)  # 900 used
    change = operations.adjust_allowance(state, 200)
    assert change.state.buckets.initial_remaining == 0
    assert change.state.buckets.initial_used == 900
    # The base is what this cycle was funded with: 900 used of the allowance, nothing left of it.
    assert change.state.funded_base_minor == 900
    assert change.moves == [Move(MoveKind.ADJUSTMENT, INITIAL, -100, 100, 0, 100, 0)]
    assert types(change) == [EventType.BALANCE_LOW]


def test_spending_the_allowance_then_lowering_and_raising_it_again_grants_nothing_twice() -> None:
    state = operations.deduct(opened_pool(allowance=10_000, postpaid_limit=0), 10_000).state
    lowered = operations.adjust_allowance(state, 0).state
    raised = operations.adjust_allowance(lowered, 10_000).state
    assert raised.buckets.initial_remaining == 0
    assert raised.buckets.initial_used == 10_000


def test_raising_the_allowance_after_use_grants_only_the_difference() -> None:
    state = operations.deduct(opened_pool(allowance=1000), 700).state
    raised = operations.adjust_allowance(state, 1500).state
    assert raised.buckets.initial_remaining == 800
    lowered = operations.adjust_allowance(raised, 500).state
    assert lowered.buckets.initial_remaining == 0
    again = operations.adjust_allowance(lowered, 1500).state
    assert again.buckets.initial_remaining == 800


def test_lowering_the_allowance_below_a_zero_total_raises_balance_below_zero() -> None:
    spent = operations.deduct(opened_pool(allowance=1000, postpaid_limit=500), 1200).state  # 200 on postpaid
    december = operations.catch_up(spent, DECEMBER_START).state  # postpaid use carries over: total 800
    assert december.buckets.total == 800
    change = operations.adjust_allowance(december, 0)
    assert change.state.buckets.total == -200
    assert EventType.BALANCE_BELOW_ZERO in types(change)
    assert only(change, EventType.BALANCE_BELOW_ZERO).dedup_key == f"{COMPANY_ID}:2026-12-01"
    again = operations.adjust_allowance(operations.adjust_allowance(change.state, 1000).state, 0)
    assert EventType.BALANCE_BELOW_ZERO not in types(again)  # once per cycle


def test_a_refund_after_a_lowered_allowance_never_lifts_initial_above_what_the_allowance_covers() -> None:
    state = operations.deduct(opened_pool(allowance=1000, postpaid_limit=0), 800).state
    taken = [Portion(INITIAL, 800)]
    lowered = operations.adjust_allowance(state, 500).state
    assert lowered.buckets.initial_remaining == 0
    change = operations.refund(lowered, taken, taken_cycle_start=lowered.cycle_start)
    # used 800 -> 0 under an allowance of 500: 500 comes back, never more than the allowance.
    assert change.state.buckets.initial_remaining == 500
    assert change.state.buckets.initial_used == 0
    assert change.portions == (Portion(INITIAL, 500),)


def test_a_change_of_anchor_day_keeps_the_current_cycle_end_and_refills_nothing() -> None:
    state = operations.deduct(opened_pool(allowance=1000), 600).state
    moved = replace(state, anchor_day=15)
    assert operations.catch_up(moved, DECEMBER_START - timedelta(seconds=1)).moves == []
    reset = operations.catch_up(moved, DECEMBER_START)
    assert reset.state.cycle_start == DECEMBER_START
    assert reset.state.cycle_end == utc(2026, 12, 14, 17, 0)  # 15 December, Jakarta midnight
    assert reset.state.buckets.initial_remaining == 1000


# --- properties -------------------------------------------------------------------------------

small = st.integers(min_value=0, max_value=10_000)


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, int]]:
    return draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("deduct"), small),
                st.tuples(st.just("top_up"), st.integers(min_value=1, max_value=10_000)),
                st.tuples(st.just("settle"), st.integers(min_value=1, max_value=10_000)),
            ),
            max_size=30,
        )
    )


@given(allowance=small, limit=small, history=histories())
def test_within_one_cycle_below_zero_fires_at_most_once_and_low_only_when_armed(
    allowance: int, limit: int, history: list[tuple[str, int]]
) -> None:
    state: PoolState = opened_pool(allowance=allowance, postpaid_limit=limit)
    below_zero_events = 0
    for index, (action, amount) in enumerate(history):
        was_armed = state.low_balance_armed
        if action == "deduct":
            amount = min(amount, state.buckets.available)
            change = operations.deduct(state, amount)
        elif action == "top_up":
            change = operations.top_up(state, amount, payment_reference=f"p{index}")
        elif state.buckets.postpaid_used > 0:
            amount = min(amount, state.buckets.postpaid_used)
            change = operations.settle_postpaid(state, amount, payment_reference=f"s{index}")
        else:
            continue
        below_zero_events += types(change).count(EventType.BALANCE_BELOW_ZERO)
        if EventType.BALANCE_LOW in types(change):
            assert was_armed and change.state.is_low and not change.state.low_balance_armed
        buckets = change.state.buckets
        assert buckets.initial_remaining >= 0
        assert buckets.additional_remaining >= 0
        assert 0 <= buckets.postpaid_used <= buckets.postpaid_limit
        assert sum(m.amount_minor for m in change.moves) == buckets.total - state.buckets.total
        state = change.state
    assert below_zero_events <= 1


@given(
    allowance=small,
    limit=small,
    threshold=st.none() | st.decimals(min_value=0, max_value=100, places=2),
    amounts=st.lists(st.integers(min_value=0, max_value=4_000), max_size=30),
)
def test_a_run_of_deductions_equals_the_same_deductions_one_at_a_time(
    allowance: int, limit: int, threshold: Decimal | None, amounts: list[int]
) -> None:
    state = replace(opened_pool(allowance=allowance, postpaid_limit=limit), threshold_percent=threshold)
    run = operations.deduct_many(state, amounts)
    step, events = state, []
    for amount, outcome in zip(amounts, run.outcomes, strict=True):
        try:
            change = operations.deduct(step, amount)
        except BillingError as error:
            assert isinstance(outcome, BillingError)
            assert (outcome.code, outcome.details) == (error.code, error.details)
            assert error.code is Rejection.QUOTA_EXCEEDED
            continue
        assert isinstance(outcome, operations.Charged)
        assert (outcome.portions, outcome.moves) == (change.portions, change.moves)
        events += change.events
        step = change.state
    assert run.state == step
    assert run.events == events


@given(
    allowance=small,
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("deduct"), small),
            st.tuples(st.just("allowance"), small),
            st.tuples(st.just("refund"), st.integers(min_value=0, max_value=30)),
        ),
        max_size=40,
    ),
)
def test_no_sequence_of_allowance_changes_grants_more_in_a_cycle_than_the_highest_allowance_in_force(
    allowance: int, steps: list[tuple[str, int]]
) -> None:
    state = opened_pool(allowance=allowance, postpaid_limit=0)
    highest = allowance
    charged: list[tuple[Portion, ...]] = []  # deductions of this cycle not refunded
    for action, value in steps:
        if action == "deduct":
            change = operations.deduct(state, min(value, state.buckets.available))
            charged.append(change.portions)
        elif action == "allowance":
            change = operations.adjust_allowance(state, value)
            highest = max(highest, value)
        elif charged:
            change = operations.refund(state, charged.pop(value % len(charged)), taken_cycle_start=state.cycle_start)
        else:
            continue
        state = change.state
        buckets = state.buckets
        used = sum(p.amount_minor for portions in charged for p in portions if p.quota_type is INITIAL)
        assert buckets.initial_used == used
        assert buckets.initial_remaining == max(buckets.initial_allowance - used, 0)
        assert buckets.initial_remaining + used <= highest


def test_a_refund_after_a_top_up_to_the_ceiling_is_refused_and_changes_nothing() -> None:
    from wabapool.domain.limits import AMOUNT_MAX_MINOR

    state = pool_state(initial_allowance=0, initial=0, postpaid_limit=0)
    state = operations.top_up(state, 1_000, payment_reference="pay-1").state
    charged = operations.deduct(state, 400)
    # Topped up so that available is exactly the ceiling: giving the 400 back would pass it.
    full = operations.top_up(charged.state, AMOUNT_MAX_MINOR - 600, payment_reference="pay-2").state
    assert full.buckets.available == AMOUNT_MAX_MINOR
    with pytest.raises(BillingError) as refused:
        operations.refund(full, charged.portions, taken_cycle_start=full.cycle_start)
    assert refused.value.code is Rejection.AMOUNT_TOO_LARGE


def test_a_company_whose_packages_sum_past_the_ceiling_is_refused() -> None:
    from wabapool.domain.limits import AMOUNT_MAX_MINOR
    from wabapool.domain.pool import Buckets

    half = AMOUNT_MAX_MINOR // 2
    operations.check_company_ceiling([Buckets(0, 0, half), Buckets(0, 0, AMOUNT_MAX_MINOR - half)])  # exactly at it
    for parts in (
        [Buckets(0, 0, half), Buckets(0, 0, half + 2)],  # available
        [Buckets(half + 1, 0, 0), Buckets(half + 1, 0, 0)],  # allowance
        [Buckets(postpaid_limit=half + 1), Buckets(postpaid_limit=half + 1)],  # credit line
    ):
        with pytest.raises(BillingError) as refused:
            operations.check_company_ceiling(parts)
        assert refused.value.code is Rejection.AMOUNT_TOO_LARGE
