"""From domain changes to what storage writes: the pool, locked and caught up, and its `PoolChanges`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain import operations
from wabapool.domain.errors import BillingError, Rejection
from wabapool.storage import companies as company_store
from wabapool.storage import ledger as ledger_store
from wabapool.storage import pools as pool_store
from wabapool.storage.changes import PoolChanges, SpendDelta, UsageDelta


async def missing_pool(connection: AsyncConnection, company_id: int) -> BillingError:
    """Why a company has no pool to charge: it does not exist, or it is not on the shared pool (v2)."""
    if await company_store.get_company(connection, company_id) is None:
        return BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
    return BillingError(Rejection.NOT_SHARED_POOL, "the company has no shared balance pool")


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
