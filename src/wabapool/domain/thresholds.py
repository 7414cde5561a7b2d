"""Low balance and below zero: when the company is warned, and when not again."""

from __future__ import annotations

from decimal import Decimal

from wabapool.domain.pool import Buckets

DEFAULT_THRESHOLD_PERCENT = Decimal(40)


def effective_threshold(threshold_percent: Decimal | None) -> Decimal:
    """`threshold_running_out` NULL means 40."""
    return DEFAULT_THRESHOLD_PERCENT if threshold_percent is None else threshold_percent


def is_low(buckets: Buckets, *, funded_base_minor: int, threshold_percent: Decimal | None) -> bool:
    """Low when prepaid money left is at or under threshold% of what was funded this cycle."""
    percent = effective_threshold(threshold_percent)
    return Decimal(buckets.spendable) * 100 <= percent * funded_base_minor


def crossed_below_zero(before: Buckets, after: Buckets) -> bool:
    """The pool total went from zero or more to under zero."""
    return before.total >= 0 > after.total
