"""Where each refunded portion goes back to."""

from __future__ import annotations

from collections.abc import Sequence

from wabapool.domain.pool import Buckets, Portion, QuotaType


def refund_portions(buckets: Buckets, taken: Sequence[Portion], *, same_cycle: bool) -> list[Portion]:
    """Portions to credit back, last taken first.

    A portion returns to the bucket it came from, except that allowance taken in
    a past cycle cannot come back (it expired at the reset) and goes to
    `additional`, and postpaid use already settled goes to `additional` too.
    """
    credits: list[Portion] = []
    postpaid_used = buckets.postpaid_used
    for portion in reversed(taken):
        if portion.quota_type is QuotaType.INITIAL and not same_cycle:
            credits.append(Portion(QuotaType.ADDITIONAL, portion.amount_minor))
        elif portion.quota_type is QuotaType.POSTPAID:
            repaid = min(portion.amount_minor, max(postpaid_used, 0))
            postpaid_used -= repaid
            if repaid:
                credits.append(Portion(QuotaType.POSTPAID, repaid))
            if portion.amount_minor - repaid:
                credits.append(Portion(QuotaType.ADDITIONAL, portion.amount_minor - repaid))
        else:
            credits.append(portion)
    return credits
