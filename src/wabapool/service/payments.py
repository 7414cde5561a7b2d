"""Payments: top-ups and postpaid settlements, idempotent on the payment reference.

A payment reference is one payment of the company, whichever kind: a replay
with the same kind and amount answers the original result, anything else is
`idempotency_conflict`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from wabapool.domain import limits, operations
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.pool import Portion
from wabapool.service.context import ServiceContext
from wabapool.service.models import Allocation, FundingResult, allocation_json, check_amount, check_code
from wabapool.service.pool_changes import check_company_sum, lock_funded_package, pool_changes, write
from wabapool.storage import requests as request_store

PaymentKind = Literal["top_up", "settlement"]
Operation = Callable[..., operations.Change]
_OPERATIONS: dict[PaymentKind, Operation] = {
    "top_up": operations.top_up,
    "settlement": operations.settle_postpaid,
}


async def fund(
    context: ServiceContext,
    company_id: int,
    kind: PaymentKind,
    *,
    amount_minor: int,
    payment_reference: str,
    service_name: str | None,
    waba_id: str | None = None,
) -> FundingResult:
    """Apply a top-up (postpaid use first, the rest to `additional`) or a settlement (postpaid use only).

    It funds the company's pool, or with `waba_id` the package that WABA
    charges (a v2 company's WABA has its own).
    """
    error = check_amount("amount", amount_minor) or check_code(
        "payment_reference", payment_reference, max_length=limits.UNIQUE_CODE_MAX_LENGTH
    )
    if error is None and waba_id is not None:
        error = check_code("waba_id", waba_id, max_length=32)
    if error:
        raise error
    at = context.clock()
    async with context.database.transaction() as connection:
        pool, caught_up = await lock_funded_package(connection, company_id, waba_id, at)
        earlier = await request_store.find_payment(connection, company_id, payment_reference)
        if earlier is not None:
            if earlier.kind != kind or earlier.amount_minor != amount_minor:
                raise BillingError(
                    Rejection.IDEMPOTENCY_CONFLICT,
                    "payment_reference was already used for another payment",
                    {"payment_reference": payment_reference},
                )
            return FundingResult(
                payment_id=earlier.id,
                payment_reference=payment_reference,
                amount=amount_minor,
                value_before=earlier.value_before_minor,
                value_after=earlier.value_after_minor,
                allocations=tuple(Allocation(**a) for a in earlier.allocations),
                replayed=True,
            )
        change = _OPERATIONS[kind](caught_up.state, amount_minor, payment_reference=payment_reference)
        await check_company_sum(connection, company_id, pool.package_id, change.state)
        allocations = tuple(Allocation.of(Portion(m.quota_type, abs(m.amount_minor))) for m in change.moves)
        payment_id = await request_store.insert_payment(
            connection,
            {
                "company_id": company_id,
                "kind": kind,
                "payment_reference": payment_reference,
                "amount_minor": amount_minor,
                "allocations": allocation_json(allocations),
                "value_before_minor": caught_up.state.buckets.total,
                "value_after_minor": change.state.buckets.total,
                "service_name": service_name,
                "created_at": at,
            },
        )
        written = await write(
            connection, [pool_changes(pool, caught_up, change, reference=payment_reference, at=at)], at=at
        )
    await context.changed(company_id, written)
    return FundingResult(
        payment_id=payment_id,
        payment_reference=payment_reference,
        amount=amount_minor,
        value_before=caught_up.state.buckets.total,
        value_after=change.state.buckets.total,
        allocations=allocations,
    )
