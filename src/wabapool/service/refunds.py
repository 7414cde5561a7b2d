"""Refunds: a deduction given back by its unique_code, idempotent on the refund_code.

A replay with the same refund_code, deduction and reason answers the original
result; the same refund_code with another deduction or reason is
`idempotency_conflict`, as for deductions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain import limits, operations
from wabapool.domain.caps import capped_part
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.pool import Portion, QuotaType
from wabapool.service.context import ServiceContext
from wabapool.service.models import Allocation, RefundRequest, RefundResult, allocation_json, check_code
from wabapool.service.pool_changes import check_company_sum, lock_waba_package, pool_changes, write
from wabapool.storage import caps as cap_store
from wabapool.storage import companies as company_store
from wabapool.storage import requests as request_store
from wabapool.storage.changes import PoolChanges, SpendDelta, UsageDelta
from wabapool.storage.pools import LockedPool
from wabapool.storage.types import Record
from wabapool.storage.usage import local_day


def _stored_reason(reason: str | None) -> str | None:
    """A refund's reason as it is stored (and compared on a replay)."""
    return (reason or "")[: limits.NAME_MAX_LENGTH] or None


def _replayed(row: Record, request: RefundRequest) -> RefundResult:
    return RefundResult(
        refund_id=row.id,
        unique_code=request.unique_code,
        refund_code=row.refund_code,
        amount=row.amount_minor,
        value_before=row.value_before_minor,
        value_after=row.value_after_minor,
        allocations=tuple(Allocation(**a) for a in row.allocations),
        replayed=True,
    )


def _check(request: RefundRequest) -> None:
    """Refuse malformed codes before any I/O."""
    error = check_code("unique_code", request.unique_code, max_length=limits.UNIQUE_CODE_MAX_LENGTH) or check_code(
        "refund_code", request.refund_code, max_length=limits.UNIQUE_CODE_MAX_LENGTH
    )
    if error:
        raise error


async def _deduction_to_refund(connection: AsyncConnection, request: RefundRequest) -> Record:
    """The stored deduction the refund gives back (it never changes: read before any lock)."""
    deduction: Record | None = await request_store.find_deduction_for_refund(
        connection, request.company_id, request.unique_code
    )
    if deduction is not None:
        return deduction
    if await company_store.get_company(connection, request.company_id) is None:
        raise BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
    raise BillingError(
        Rejection.UNKNOWN_DEDUCTION, "no deduction with this unique_code", {"unique_code": request.unique_code}
    )


async def _earlier_refund(
    connection: AsyncConnection, request: RefundRequest, deduction: Record, reason: str | None
) -> RefundResult | None:
    """A replay's original result; a refund_code used otherwise, or a deduction already refunded, refused."""
    company_id = request.company_id
    earlier = await request_store.find_refund(connection, company_id, refund_code=request.refund_code)
    if earlier is not None:
        if earlier.deduction_request_id != deduction.id or earlier.reason != reason:
            raise BillingError(
                Rejection.IDEMPOTENCY_CONFLICT,
                "refund_code was already used for another deduction or reason",
                {"refund_code": request.refund_code},
            )
        return _replayed(earlier, request)
    if await request_store.find_refund(connection, company_id, deduction_request_id=deduction.id) is not None:
        raise BillingError(
            Rejection.ALREADY_REFUNDED, "this deduction was already refunded", {"unique_code": request.unique_code}
        )
    return None


async def refund(context: ServiceContext, request: RefundRequest, *, service_name: str | None) -> RefundResult:
    """Give a deduction's portions back, last taken first; the WABA's spend in that cycle falls with it."""
    _check(request)
    at = context.clock()
    company_id = request.company_id
    async with context.database.transaction() as connection:
        deduction = await _deduction_to_refund(connection, request)
        # Back to the package the WABA charges now: its own, or the pool it was moved into.
        pool, caught_up = await lock_waba_package(connection, company_id, deduction.waba_id, at)
        reason = _stored_reason(request.reason)
        replayed = await _earlier_refund(connection, request, deduction, reason)
        if replayed is not None:
            return replayed
        taken = [Portion(QuotaType(a["quota_type"]), a["amount"]) for a in deduction.allocations]
        change = operations.refund(caught_up.state, taken, taken_cycle_start=deduction.cycle_start)
        await check_company_sum(connection, company_id, pool.package_id, change.state)
        allocations = tuple(Allocation.of(p) for p in change.portions)
        # What the pool got back: less than the deduction only for allowance a lowered plan no longer covers.
        refunded_minor = sum(p.amount_minor for p in change.portions)
        refund_id = await request_store.insert_refund(
            connection,
            {
                "company_id": company_id,
                "refund_code": request.refund_code,
                "deduction_request_id": deduction.id,
                "reason": reason,
                "amount_minor": refunded_minor,
                "allocations": allocation_json(allocations),
                "value_before_minor": caught_up.state.buckets.total,
                "value_after_minor": change.state.buckets.total,
                "service_name": service_name,
                "created_at": at,
            },
        )
        capped = await _capped_part(connection, deduction, caught_up.state.cycle_start)
        changes = _refund_changes(pool, caught_up, change, deduction, request.refund_code, at, capped)
        written = await write(connection, [changes], at=at)
    await context.changed(company_id, written)
    return RefundResult(
        refund_id=refund_id,
        unique_code=request.unique_code,
        refund_code=request.refund_code,
        amount=refunded_minor,
        value_before=caught_up.state.buckets.total,
        value_after=change.state.buckets.total,
        allocations=allocations,
    )


async def _capped_part(connection: AsyncConnection, deduction: Record, cycle_start: datetime) -> int:
    """What the WABA's spending cap counted of the deduction: by the cap in force (setting one recounts the cycle)."""
    if deduction.cycle_start != cycle_start:
        return 0
    cap = await cap_store.get_cap(connection, deduction.company_id, deduction.waba_id)
    return capped_part(cap, deduction.category, deduction.amount_minor)


def _refund_changes(
    pool: LockedPool,
    caught_up: operations.Change,
    change: operations.Change,
    deduction: Record,
    refund_code: str,
    at: datetime,
    capped_minor: int,
) -> PoolChanges:
    """The refund's writes: its entries, the spend of the deduction's cycle if still open, the day's usage."""
    return pool_changes(
        pool,
        caught_up,
        change,
        reference=refund_code,
        at=at,
        waba_id=deduction.waba_id,
        deduction_request_id=deduction.id,
        # Spend of a closed cycle stays as its statement has it; this cycle's (and its capped part) falls.
        spend=[SpendDelta(deduction.waba_id, deduction.cycle_start, -deduction.amount_minor, -capped_minor)]
        if deduction.cycle_start == caught_up.state.cycle_start
        else [],
        # The day's usage falls on the refund's own day, as the ledger has it.
        usage=[
            UsageDelta(
                deduction.waba_id,
                local_day(at, caught_up.state.timezone),
                -deduction.amount_minor,
                -deduction.quantity,
            )
        ],
    )
