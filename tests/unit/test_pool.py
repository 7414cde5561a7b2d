"""Buckets, pool figures, the deduction hierarchy and funding, as ledger moves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.pool import (
    HIERARCHY,
    Buckets,
    Move,
    MoveKind,
    Portion,
    QuotaType,
    allocate,
    charge,
    credited_to,
    fund,
    move,
)


def buckets(initial: int = 0, additional: int = 0, limit: int = 0, used: int = 0, allowance: int = 0) -> Buckets:
    return Buckets(
        initial_allowance=allowance,
        initial_remaining=initial,
        additional_remaining=additional,
        postpaid_limit=limit,
        postpaid_used=used,
    )


# --- vocabulary -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quota_type", "expected"),
    [
        (QuotaType.INITIAL, "wa_balance_initial"),
        (QuotaType.ADDITIONAL, "wa_balance_additional"),
        (QuotaType.POSTPAID, "wa_balance_postpaid"),
    ],
)
def test_credited_to_is_component_code_underscore_quota_type(quota_type: QuotaType, expected: str) -> None:
    assert credited_to(quota_type) == expected
    assert Portion(quota_type, 1).credited_to == expected


def test_hierarchy_draws_initial_then_additional_then_postpaid() -> None:
    assert HIERARCHY == (QuotaType.INITIAL, QuotaType.ADDITIONAL, QuotaType.POSTPAID)


# --- figures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pool", "total", "available"),
    [
        (buckets(), 0, 0),
        (buckets(initial=100), 100, 100),
        (buckets(initial=100, additional=50), 150, 150),
        (buckets(initial=100, additional=50, limit=30), 150, 180),
        (buckets(initial=0, additional=0, limit=30, used=10), -10, 20),
        (buckets(initial=0, additional=0, limit=30, used=30), -30, 0),
        (buckets(initial=7, additional=5, limit=40, used=25), -13, 27),
    ],
)
def test_total_is_prepaid_minus_postpaid_used_and_available_adds_unused_postpaid_headroom(
    pool: Buckets, total: int, available: int
) -> None:
    assert pool.total == pool.initial_remaining + pool.additional_remaining - pool.postpaid_used == total
    assert (
        pool.available
        == pool.initial_remaining + pool.additional_remaining + (pool.postpaid_limit - pool.postpaid_used)
        == available
    )


def test_spendable_counts_only_prepaid_buckets() -> None:
    assert buckets(initial=7, additional=5, limit=40, used=25).spendable == 12


def test_stored_value_is_remaining_for_prepaid_buckets_and_used_for_postpaid() -> None:
    pool = buckets(initial=1, additional=2, limit=9, used=3)
    assert pool.value(QuotaType.INITIAL) == 1
    assert pool.value(QuotaType.ADDITIONAL) == 2
    assert pool.value(QuotaType.POSTPAID) == 3
    assert pool.with_value(QuotaType.POSTPAID, 8) == buckets(initial=1, additional=2, limit=9, used=8)
    assert pool.with_value(QuotaType.INITIAL, 0) == buckets(initial=0, additional=2, limit=9, used=3)
    assert pool.with_value(QuotaType.ADDITIONAL, 5) == buckets(initial=1, additional=5, limit=9, used=3)


# --- allocation -------------------------------------------------------------------------------


def test_deduction_of_exactly_available_succeeds_and_one_more_unit_is_quota_exceeded() -> None:
    pool = buckets(initial=100, additional=50, limit=30, used=10, allowance=100)
    assert pool.available == 170

    updated, portions, _ = charge(pool, 170)
    assert [(p.quota_type, p.amount_minor) for p in portions] == [
        (QuotaType.INITIAL, 100),
        (QuotaType.ADDITIONAL, 50),
        (QuotaType.POSTPAID, 20),
    ]
    assert updated.available == 0
    assert updated.postpaid_used == updated.postpaid_limit == 30

    with pytest.raises(BillingError) as raised:
        charge(pool, 171)
    assert raised.value.code is Rejection.QUOTA_EXCEEDED
    assert raised.value.details == {"amount": 171, "available": 170}
    # The buckets are immutable: a refused charge leaves them exactly as they were.
    assert pool == buckets(initial=100, additional=50, limit=30, used=10, allowance=100)


def test_charge_on_an_exhausted_pool_is_quota_exceeded_for_a_single_unit() -> None:
    pool = buckets(limit=30, used=30)
    with pytest.raises(BillingError) as raised:
        allocate(pool, 1)
    assert raised.value.code is Rejection.QUOTA_EXCEEDED
    assert raised.value.details["available"] == 0


def test_split_over_all_three_buckets_records_portions_and_every_move_with_before_and_after() -> None:
    pool = buckets(initial=100, additional=50, limit=30, allowance=100)

    updated, portions, moves = charge(pool, 170)

    assert portions == (
        Portion(QuotaType.INITIAL, 100),
        Portion(QuotaType.ADDITIONAL, 50),
        Portion(QuotaType.POSTPAID, 20),
    )
    assert moves == [
        Move(MoveKind.DEDUCTION, QuotaType.INITIAL, -100, 100, 0, 150, 50),
        Move(MoveKind.DEDUCTION, QuotaType.ADDITIONAL, -50, 50, 0, 50, 0),
        Move(MoveKind.DEDUCTION, QuotaType.POSTPAID, -20, 0, 20, 0, -20),
    ]
    assert updated == buckets(initial=0, additional=0, limit=30, used=20, allowance=100)._replace(initial_used=100)
    assert updated.total == -20
    assert updated.available == 10


def test_charge_that_fits_in_initial_takes_only_from_initial() -> None:
    updated, portions, moves = charge(buckets(initial=100, additional=50, limit=30), 40)
    assert portions == (Portion(QuotaType.INITIAL, 40),)
    assert moves == [Move(MoveKind.DEDUCTION, QuotaType.INITIAL, -40, 100, 60, 150, 110)]
    assert updated.additional_remaining == 50 and updated.postpaid_used == 0


def test_charge_skips_an_empty_initial_bucket_and_starts_at_additional() -> None:
    _, portions, moves = charge(buckets(initial=0, additional=50, limit=30), 60)
    assert portions == (Portion(QuotaType.ADDITIONAL, 50), Portion(QuotaType.POSTPAID, 10))
    assert [m.quota_type for m in moves] == [QuotaType.ADDITIONAL, QuotaType.POSTPAID]


def test_charge_uses_only_the_unused_part_of_the_postpaid_limit() -> None:
    pool = buckets(initial=5, limit=30, used=25)
    assert allocate(pool, 10) == (Portion(QuotaType.INITIAL, 5), Portion(QuotaType.POSTPAID, 5))
    with pytest.raises(BillingError):
        allocate(pool, 11)


def test_charge_of_zero_takes_nothing() -> None:
    pool = buckets(initial=5)
    updated, portions, moves = charge(pool, 0)
    assert (updated, portions, moves) == (pool, (), [])


def test_a_negative_charge_is_a_programming_error_not_a_credit() -> None:
    with pytest.raises(ValueError):
        allocate(buckets(initial=5), -1)


# --- moves ------------------------------------------------------------------------------------


def test_a_positive_move_on_postpaid_lowers_used_and_raises_the_total() -> None:
    updated, entry = move(buckets(limit=50, used=30), MoveKind.SETTLEMENT, QuotaType.POSTPAID, 20)
    assert updated.postpaid_used == 10
    assert entry == Move(MoveKind.SETTLEMENT, QuotaType.POSTPAID, 20, 30, 10, -30, -10)


# --- funding ----------------------------------------------------------------------------------


def test_funding_pays_postpaid_used_first_then_credits_additional() -> None:
    pool = buckets(initial=0, additional=5, limit=100, used=40)

    updated, moves, credited = fund(pool, 100, MoveKind.TOP_UP)

    assert credited == 60
    assert moves == [
        Move(MoveKind.TOP_UP, QuotaType.POSTPAID, 40, 40, 0, -35, 5),
        Move(MoveKind.TOP_UP, QuotaType.ADDITIONAL, 60, 5, 65, 5, 65),
    ]
    assert updated == buckets(initial=0, additional=65, limit=100, used=0)


def test_funding_smaller_than_postpaid_used_only_lowers_used() -> None:
    updated, moves, credited = fund(buckets(limit=100, used=40), 15, MoveKind.SETTLEMENT)
    assert credited == 0
    assert moves == [Move(MoveKind.SETTLEMENT, QuotaType.POSTPAID, 15, 40, 25, -40, -25)]
    assert updated.postpaid_used == 25 and updated.additional_remaining == 0


def test_funding_exactly_postpaid_used_clears_it_and_credits_nothing() -> None:
    updated, moves, credited = fund(buckets(limit=100, used=40), 40, MoveKind.TOP_UP)
    assert credited == 0
    assert [m.quota_type for m in moves] == [QuotaType.POSTPAID]
    assert updated.postpaid_used == 0 and updated.total == 0


def test_funding_without_postpaid_use_credits_everything_to_additional() -> None:
    updated, moves, credited = fund(buckets(initial=10, additional=5), 30, MoveKind.TOP_UP)
    assert credited == 30
    assert moves == [Move(MoveKind.TOP_UP, QuotaType.ADDITIONAL, 30, 5, 35, 15, 45)]
    assert updated.additional_remaining == 35


@pytest.mark.parametrize("amount", [0, -1])
def test_funding_must_be_positive(amount: int) -> None:
    with pytest.raises(ValueError):
        fund(buckets(), amount, MoveKind.TOP_UP)


# --- properties -------------------------------------------------------------------------------

money = st.integers(min_value=0, max_value=10**12)


@st.composite
def valid_buckets(draw: st.DrawFn) -> Buckets:
    limit = draw(money)
    return Buckets(
        initial_allowance=draw(money),
        initial_remaining=draw(money),
        additional_remaining=draw(money),
        postpaid_limit=limit,
        postpaid_used=draw(st.integers(min_value=0, max_value=limit)),
    )


def assert_moves_chain(before: Buckets, after: Buckets, moves: list[Move]) -> None:
    """Each move starts where the previous one ended, and the last one ends at `after`."""
    total = before.total
    for entry in moves:
        assert entry.total_before_minor == total
        assert entry.total_after_minor == entry.total_before_minor + entry.amount_minor
        sign = -1 if entry.quota_type is QuotaType.POSTPAID else 1
        assert entry.bucket_after_minor - entry.bucket_before_minor == sign * entry.amount_minor
        total = entry.total_after_minor
    assert total == after.total


@given(pool=valid_buckets(), data=st.data())
def test_a_charge_within_available_takes_exactly_the_amount_in_hierarchy_order_without_overdraft(
    pool: Buckets, data: st.DataObject
) -> None:
    amount = data.draw(st.integers(min_value=0, max_value=pool.available))

    updated, portions, moves = charge(pool, amount)

    assert sum(p.amount_minor for p in portions) == amount
    assert all(p.amount_minor > 0 for p in portions)
    order = [HIERARCHY.index(p.quota_type) for p in portions]
    assert order == sorted(set(order))
    # A later bucket is only touched once every earlier one is empty.
    for portion in portions[:-1]:
        assert updated.value(portion.quota_type) == (
            updated.postpaid_limit if portion.quota_type is QuotaType.POSTPAID else 0
        )
    assert updated.initial_remaining >= 0
    assert updated.additional_remaining >= 0
    assert 0 <= updated.postpaid_used <= updated.postpaid_limit
    assert updated.available == pool.available - amount >= 0
    assert updated.total == pool.total - amount
    assert updated.initial_allowance == pool.initial_allowance
    assert updated.postpaid_limit == pool.postpaid_limit
    assert_moves_chain(pool, updated, moves)


@given(pool=valid_buckets(), excess=st.integers(min_value=1, max_value=10**6))
def test_a_charge_over_available_is_always_quota_exceeded(pool: Buckets, excess: int) -> None:
    with pytest.raises(BillingError) as raised:
        allocate(pool, pool.available + excess)
    assert raised.value.code is Rejection.QUOTA_EXCEEDED


@given(pool=valid_buckets(), amount=st.integers(min_value=1, max_value=10**12))
def test_funding_raises_the_total_by_the_amount_and_never_leaves_postpaid_used_negative(
    pool: Buckets, amount: int
) -> None:
    updated, moves, credited = fund(pool, amount, MoveKind.TOP_UP)

    assert updated.total == pool.total + amount
    assert updated.postpaid_used == max(pool.postpaid_used - amount, 0) >= 0
    assert credited == max(amount - pool.postpaid_used, 0)
    assert updated.additional_remaining == pool.additional_remaining + credited
    assert updated.initial_remaining == pool.initial_remaining
    assert_moves_chain(pool, updated, moves)
