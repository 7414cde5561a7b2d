"""The low-balance rule and the below-zero crossing, as pure predicates."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wabapool.domain.pool import Buckets
from wabapool.domain.thresholds import (
    DEFAULT_THRESHOLD_PERCENT,
    crossed_below_zero,
    effective_threshold,
    is_low,
)


def prepaid(initial: int, additional: int = 0, *, limit: int = 0, used: int = 0) -> Buckets:
    return Buckets(
        initial_allowance=1000,
        initial_remaining=initial,
        additional_remaining=additional,
        postpaid_limit=limit,
        postpaid_used=used,
    )


def test_null_threshold_means_forty_percent() -> None:
    assert Decimal(40) == DEFAULT_THRESHOLD_PERCENT
    assert effective_threshold(None) == Decimal(40)


def test_a_set_threshold_is_used_as_is_including_zero() -> None:
    assert effective_threshold(Decimal("12.50")) == Decimal("12.50")
    assert effective_threshold(Decimal(0)) == Decimal(0)


@pytest.mark.parametrize("threshold", [None, Decimal(40), Decimal("40.00")])
def test_pool_is_low_at_exactly_the_threshold_and_not_low_one_unit_above(threshold: Decimal | None) -> None:
    # 40% of a funded base of 1000 is 400.
    assert is_low(prepaid(400), funded_base_minor=1000, threshold_percent=threshold)
    assert not is_low(prepaid(401), funded_base_minor=1000, threshold_percent=threshold)
    assert is_low(prepaid(399), funded_base_minor=1000, threshold_percent=threshold)


def test_low_balance_adds_initial_and_additional_remaining() -> None:
    assert is_low(prepaid(300, 100), funded_base_minor=1000, threshold_percent=None)
    assert not is_low(prepaid(300, 101), funded_base_minor=1000, threshold_percent=None)
    assert is_low(prepaid(0, 400), funded_base_minor=1000, threshold_percent=None)


def test_postpaid_headroom_does_not_lift_a_pool_out_of_low_balance() -> None:
    assert is_low(prepaid(400, limit=10_000), funded_base_minor=1000, threshold_percent=None)


def test_postpaid_use_does_not_push_a_pool_into_low_balance() -> None:
    # The rule looks at prepaid money left, not at the total.
    assert not is_low(prepaid(401, limit=10_000, used=5_000), funded_base_minor=1000, threshold_percent=None)


def test_decimal_threshold_of_twelve_and_a_half_percent_is_applied_exactly() -> None:
    twelve_fifty = Decimal("12.50")
    assert is_low(prepaid(125), funded_base_minor=1000, threshold_percent=twelve_fifty)
    assert not is_low(prepaid(126), funded_base_minor=1000, threshold_percent=twelve_fifty)


def test_a_fractional_threshold_amount_is_compared_without_rounding() -> None:
    # 12.50% of 333 is 41.625: 41 is under it, 42 is over it.
    twelve_fifty = Decimal("12.50")
    assert is_low(prepaid(41), funded_base_minor=333, threshold_percent=twelve_fifty)
    assert not is_low(prepaid(42), funded_base_minor=333, threshold_percent=twelve_fifty)
    # 33.33% of 300 is 99.99: 99 is low, 100 is not.
    assert is_low(prepaid(99), funded_base_minor=300, threshold_percent=Decimal("33.33"))
    assert not is_low(prepaid(100), funded_base_minor=300, threshold_percent=Decimal("33.33"))


def test_zero_threshold_is_low_only_when_nothing_prepaid_is_left() -> None:
    assert is_low(prepaid(0), funded_base_minor=1000, threshold_percent=Decimal(0))
    assert not is_low(prepaid(1), funded_base_minor=1000, threshold_percent=Decimal(0))


def test_hundred_percent_threshold_is_low_while_nothing_was_added_beyond_the_base() -> None:
    assert is_low(prepaid(1000), funded_base_minor=1000, threshold_percent=Decimal(100))
    assert not is_low(prepaid(1001), funded_base_minor=1000, threshold_percent=Decimal(100))


@given(
    base=st.integers(min_value=0, max_value=10**12),
    hundredths=st.integers(min_value=0, max_value=10_000),
)
def test_low_balance_boundary_is_the_largest_spendable_at_or_under_the_threshold_amount(
    base: int, hundredths: int
) -> None:
    percent = Decimal(hundredths) / 100  # DECIMAL(5,2) values from 0.00 to 100.00
    boundary = (hundredths * base) // 10_000  # floor(percent% × base), computed in integers
    assert is_low(prepaid(boundary), funded_base_minor=base, threshold_percent=percent)
    assert not is_low(prepaid(boundary + 1), funded_base_minor=base, threshold_percent=percent)


@pytest.mark.parametrize(
    ("before_total", "after_total", "crossed"),
    [
        (0, -1, True),
        (5, -1, True),
        (1, 0, False),
        (0, 0, False),
        (-1, -2, False),
        (-5, 3, False),
    ],
)
def test_below_zero_is_crossed_only_going_from_zero_or_more_to_under_zero(
    before_total: int, after_total: int, crossed: bool
) -> None:
    def with_total(total: int) -> Buckets:
        return prepaid(max(total, 0), limit=100, used=max(-total, 0))

    assert crossed_below_zero(with_total(before_total), with_total(after_total)) is crossed
