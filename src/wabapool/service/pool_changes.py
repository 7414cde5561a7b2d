"""From domain changes to what storage writes: the pool, locked and caught up, its `PoolChanges`, the write.

Every use case writes through `write`: it decides the statements of the cycles a change closes
(the domain's `statements.closed_by`, from what the stored cycle did) and hands everything to the
one storage writer, `storage.changes.write_changes`, which only persists.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain import operations
from wabapool.domain import statements as statement_rules
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.operations import PoolState
from wabapool.storage import companies as company_store
from wabapool.storage import ledger as ledger_store
from wabapool.storage import pools as pool_store
from wabapool.storage import statements as statement_store
from wabapool.storage.changes import PoolChanges, SpendDelta, UsageDelta, write_changes
from wabapool.storage.errors import StorageUnavailable
from wabapool.storage.versions import Written

# Times a WABA's package is looked up again within one transaction when the one found was closed under its
# lock (the backfill or its rollback just moved the WABA, rare). Past this, something keeps moving it:
# answer `unavailable` (nothing written) instead of spinning.
MOVED_PACKAGE_LOOKUPS = 4


async def write(connection: AsyncConnection, changes: Sequence[PoolChanges], *, at: datetime) -> list[Written]:
    """Every pool's changes in the caller's transaction, with the statements of the cycles they close."""
    closing = [await _with_statements(connection, change) for change in changes]
    return await write_changes(connection, closing, at=at)


async def _with_statements(connection: AsyncConnection, change: PoolChanges) -> PoolChanges:
    """The change with the statements of the cycles it closes (none, and no read, when its cycle stays)."""
    stored = change.pool.state
    if change.after.cycle_start == stored.cycle_start:
        return change
    # Read under the pool's lock, before this transaction writes: its own rows all belong to the new cycle.
    activity = await statement_store.cycle_activity(connection, change.pool)
    return change._replace(statements=statement_rules.closed_by(stored, change.after.cycle_start, activity))


async def missing_pool(connection: AsyncConnection, company_id: int) -> BillingError:
    """Why a company has no pool to charge: it does not exist, or it is not on the shared pool (v2)."""
    if await company_store.get_company(connection, company_id) is None:
        return BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
    return BillingError(Rejection.NOT_SHARED_POOL, "the company has no shared balance pool")


async def lock_waba_package(
    connection: AsyncConnection, company_id: int, waba_id: str, at: datetime
) -> tuple[pool_store.LockedPool, operations.Change]:
    """The package a WABA of the company charges now (its pool, or its own), locked and caught up.

    A package found closed under its lock was just moved by the backfill (or its
    rollback): the WABA's new package is read again, after that commit.
    """
    for _ in range(MOVED_PACKAGE_LOOKUPS):
        package_id = await company_store.waba_package_id(connection, company_id, waba_id)
        if package_id is None:
            if not await company_store.waba_exists(connection, company_id, waba_id):
                raise BillingError(Rejection.UNKNOWN_WABA, "no such WABA in this company", {"waba_id": waba_id})
            raise BillingError(Rejection.NOT_SHARED_POOL, "this WABA has no package", {"waba_id": waba_id})
        pool = (await pool_store.load_packages(connection, company_id, [package_id], for_update=True)).get(package_id)
        if pool is not None and not pool.closed:
            return pool, operations.catch_up(pool.state, at)
    raise StorageUnavailable(f"the WABA's package kept moving for {MOVED_PACKAGE_LOOKUPS} look-ups")


async def lock_funded_package(
    connection: AsyncConnection, company_id: int, waba_id: str | None, at: datetime
) -> tuple[pool_store.LockedPool, operations.Change]:
    """What a payment funds: the WABA's package when `waba_id` is given (v2), else the company's pool."""
    if waba_id is not None:
        return await lock_waba_package(connection, company_id, waba_id, at)
    company = await company_store.get_company(connection, company_id)
    if company is not None and company.billing_version == "v2":
        raise BillingError(
            Rejection.INVALID_REQUEST,
            "a v2 company has one package per WABA: say which with waba_id",
            {"field": "waba_id"},
        )
    return await lock_pool(connection, company_id, at)


async def lock_pool(
    connection: AsyncConnection, company_id: int, at: datetime, *, for_update: bool = True
) -> tuple[pool_store.LockedPool, operations.Change]:
    """The company's pool (locked unless only read), caught up to the cycle in force at `at`.

    A change to a pool whose cycle has ended applies the reset first, in the
    same transaction: nothing is ever charged to a finished cycle.
    """
    pool = await pool_store.load_pool(connection, company_id, for_update=for_update)
    if pool is None:
        raise await missing_pool(connection, company_id)
    return pool, operations.catch_up(pool.state, at)


async def check_company_sum(
    connection: AsyncConnection, company_id: int, package_id: int | None, after: PoolState
) -> None:
    """Refuse a change of one package (`package_id`, None for one being opened) that would take the company's
    summed figures past the ceiling on money.

    The other open packages are read without their locks: a change racing on another package of the same
    company (rare: payments and provisioning) could pass the sum by its own amount at most, and every
    package stays within the ceiling on its own.
    """
    others = [
        package.state.buckets
        for package in await pool_store.company_packages(connection, company_id, for_update=False)
        if package.package_id != package_id
    ]
    if others:
        operations.check_company_ceiling([after.buckets, *others])


def cycle_entries(
    pool: pool_store.LockedPool, caught_up: operations.Change, *, at: datetime
) -> list[ledger_store.LedgerRow]:
    """Ledger entries of the resets a catch-up applied (referenced by the cycle they started)."""
    state = caught_up.state
    context = ledger_store.EntryContext(reference=f"cycle:{state.cycle_label}", cycle_start=state.cycle_start)
    return ledger_store.entry_rows(
        company_id=state.company_id, package_id=pool.package_id, moves=caught_up.moves, context=context, at=at
    )


def pool_changes(
    pool: pool_store.LockedPool,
    caught_up: operations.Change,
    change: operations.Change,
    *,
    reference: str,
    at: datetime,
    waba_id: str | None = None,
    deduction_request_id: int | None = None,
    spend: Sequence[SpendDelta] = (),
    usage: Sequence[UsageDelta] = (),
) -> PoolChanges:
    """Any due cycle resets, then one change: its entries, the final state, the events in order."""
    state = change.state
    context = ledger_store.EntryContext(
        reference=reference, cycle_start=state.cycle_start, waba_id=waba_id, deduction_request_id=deduction_request_id
    )
    entries = cycle_entries(pool, caught_up, at=at) + ledger_store.entry_rows(
        company_id=state.company_id, package_id=pool.package_id, moves=change.moves, context=context, at=at
    )
    events = [*caught_up.events, *change.events]
    return PoolChanges(pool=pool, after=state, entries=entries, spend=spend, usage=usage, events=events)
