"""Low balance and below zero: when the company is warned, and when not again."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from wabapool.domain.pool import Buckets

DEFAULT_THRESHOLD_PERCENT = Decimal(40)


def effective_threshold(threshold_percent: Decimal | None) -> Decimal:
    """`threshold_running_out` NULL means 40."""
    return DEFAULT_THRESHOLD_PERCENT if threshold_percent is None else threshold_percent


def low_bound(*, funded_base_minor: int, threshold_percent: Decimal | None) -> int:
    """The most prepaid money left that is still low: threshold% of what was funded, rounded down.

    Exact, because spendable money is whole minor units: `s * 100 <= p * base`
    holds exactly when `s <= floor(p * base / 100)`. An integer bound lets a
    run of deductions test each step without Decimal arithmetic.
    """
    exact = (effective_threshold(threshold_percent) * funded_base_minor).scaleb(-2)
    return int(exact.to_integral_value(rounding=ROUND_FLOOR))


def is_low(buckets: Buckets, *, funded_base_minor: int, threshold_percent: Decimal | None) -> bool:
    """Low when prepaid money left is at or under threshold% of what was funded this cycle."""
    return buckets.spendable <= low_bound(funded_base_minor=funded_base_minor, threshold_percent=threshold_percent)


def crossed_below_zero(before: Buckets, after: Buckets) -> bool:
    """The pool total went from zero or more to under zero."""
    return before.total >= 0 > after.total
