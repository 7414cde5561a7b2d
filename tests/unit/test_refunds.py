"""Where a refunded portion goes back to, and the refund as a pool change."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.builders import DECEMBER_START, NOVEMBER_START, pool_state, utc
from wabapool.domain import operations
from wabapool.domain.pool import Buckets, Move, MoveKind, Portion, QuotaType
from wabapool.domain.refunds import refund_portions

INITIAL, ADDITIONAL, POSTPAID = QuotaType.INITIAL, QuotaType.ADDITIONAL, QuotaType.POSTPAID
SPLIT = (Portion(INITIAL, 100), Portion(ADDITIONAL, 50), Portion(POSTPAID, 20))


def buckets(initial: int = 0, additional: int = 0, limit: int = 30, used: int = 0) -> Buckets:
    return Buckets(
        initial_allowance=100,
        initial_remaining=initial,
        additional_remaining=additional,
        postpaid_limit=limit,
        postpaid_used=used,
    )


# --- refund_portions --------------------------------------------------------------------------


def test_refund_in_the_same_cycle_gives_each_portion_back_to_its_bucket_last_taken_first() -> None:
    credits = refund_portions(buckets(used=20), SPLIT, same_cycle=True)
    assert credits == [Portion(POSTPAID, 20), Portion(ADDITIONAL, 50), Portion(INITIAL, 100)]


def test_refund_after_a_reset_sends_a_past_cycles_initial_portion_to_additional() -> None:
    credits = refund_portions(buckets(initial=100, used=20), SPLIT, same_cycle=False)
    assert credits == [Portion(POSTPAID, 20), Portion(ADDITIONAL, 50), Portion(ADDITIONAL, 100)]


def test_refund_of_postpaid_already_settled_goes_to_additional() -> None:
    # The deduction used 20 of postpaid; the bill was settled since, so used is 0.
    assert refund_portions(buckets(used=0), (Portion(POSTPAID, 20),), same_cycle=True) == [Portion(ADDITIONAL, 20)]


def test_refund_of_postpaid_partly_settled_lowers_used_by_what_is_left_and_credits_the_rest() -> None:
    credits = refund_portions(buckets(used=5), (Portion(POSTPAID, 20),), same_cycle=True)
    assert credits == [Portion(POSTPAID, 5), Portion(ADDITIONAL, 15)]


def test_refund_of_an_additional_portion_goes_back_to_additional_in_any_cycle() -> None:
    assert refund_portions(buckets(), (Portion(ADDITIONAL, 7),), same_cycle=False) == [Portion(ADDITIONAL, 7)]


def test_refund_of_nothing_credits_nothing() -> None:
    assert refund_portions(buckets(), (), same_cycle=True) == []


# --- operations.refund ------------------------------------------------------------------------


def test_same_cycle_refund_restores_every_bucket_with_moves_in_reverse_order() -> None:
    state = pool_state(initial_allowance=100, initial=100, additional=50, postpaid_limit=30)
    taken = operations.deduct(state, 170)
    assert taken.state.buckets.total == -20

    refunded = operations.refund(taken.state, taken.portions, taken_cycle_start=NOVEMBER_START)

    assert refunded.state.buckets == state.buckets
    assert refunded.moves == [
        Move(MoveKind.REFUND, POSTPAID, 20, 20, 0, -20, 0),
        Move(MoveKind.REFUND, ADDITIONAL, 50, 0, 50, 0, 50),
        Move(MoveKind.REFUND, INITIAL, 100, 0, 100, 50, 150),
    ]
    assert refunded.portions == (Portion(POSTPAID, 20), Portion(ADDITIONAL, 50), Portion(INITIAL, 100))
    assert refunded.events == []


def test_same_cycle_is_decided_by_the_instant_not_by_how_it_is_written() -> None:
    state = pool_state(initial_allowance=100, initial=60)
    jakarta_midnight = NOVEMBER_START.astimezone(ZoneInfo("Asia/Jakarta"))
    refunded = operations.refund(state, (Portion(INITIAL, 40),), taken_cycle_start=jakarta_midnight)
    assert refunded.state.buckets.initial_remaining == 100


def test_refund_after_a_cycle_reset_credits_the_expired_allowance_to_additional() -> None:
    state = pool_state(initial_allowance=100, initial=100, additional=0, postpaid_limit=30)
    taken = operations.deduct(state, 120)  # 100 initial + 20 postpaid in November
    december = operations.catch_up(taken.state, utc(2026, 12, 5))
    assert december.state.cycle_start == DECEMBER_START
    assert december.state.buckets.initial_remaining == 100

    refunded = operations.refund(december.state, taken.portions, taken_cycle_start=NOVEMBER_START)

    after = refunded.state.buckets
    assert after.initial_remaining == 100  # the fresh allowance is not topped past itself
    assert after.additional_remaining == 100  # November's allowance comes back as credit
    assert after.postpaid_used == 0  # the postpaid portion lowers used
    assert refunded.moves == [
        Move(MoveKind.REFUND, POSTPAID, 20, 20, 0, 80, 100),
        Move(MoveKind.REFUND, ADDITIONAL, 100, 0, 100, 100, 200),
    ]


def test_refund_does_not_change_the_cycle_the_funded_base_or_the_warning_flags() -> None:
    state = pool_state(initial=100, armed=False, funded_base=1000)
    refunded = operations.refund(state, (Portion(INITIAL, 50),), taken_cycle_start=NOVEMBER_START)
    assert refunded.state.cycle_start == state.cycle_start
    assert refunded.state.funded_base_minor == 1000
    assert refunded.state.low_balance_armed is False


# --- properties -------------------------------------------------------------------------------

money = st.integers(min_value=0, max_value=10**9)


@st.composite
def states(draw: st.DrawFn) -> operations.PoolState:
    allowance = draw(money)
    limit = draw(money)
    return pool_state(
        initial_allowance=allowance,
        initial=draw(st.integers(min_value=0, max_value=allowance)),
        additional=draw(money),
        postpaid_limit=limit,
        postpaid_used=draw(st.integers(min_value=0, max_value=limit)),
    )


@given(state=states(), data=st.data())
def test_refund_after_deduct_in_the_same_cycle_restores_the_buckets_exactly(
    state: operations.PoolState, data: st.DataObject
) -> None:
    amount = data.draw(st.integers(min_value=0, max_value=state.buckets.available))
    taken = operations.deduct(state, amount)

    refunded = operations.refund(taken.state, taken.portions, taken_cycle_start=state.cycle_start)

    assert refunded.state.buckets == state.buckets
    assert sum(m.amount_minor for m in refunded.moves) == amount
    assert [m.quota_type for m in refunded.moves] == [p.quota_type for p in reversed(taken.portions)]


@given(state=states(), data=st.data())
def test_refund_in_a_later_cycle_gives_back_the_whole_amount_and_never_touches_initial(
    state: operations.PoolState, data: st.DataObject
) -> None:
    amount = data.draw(st.integers(min_value=0, max_value=state.buckets.available))
    taken = operations.deduct(state, amount)
    later = operations.catch_up(taken.state, utc(2027, 1, 5)).state

    refunded = operations.refund(later, taken.portions, taken_cycle_start=state.cycle_start)

    assert refunded.state.buckets.total == later.buckets.total + amount
    assert refunded.state.buckets.initial_remaining == later.buckets.initial_remaining
    assert refunded.state.buckets.postpaid_used >= 0
