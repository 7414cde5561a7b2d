"""Setting a WABA's spending cap (rule 3.11): provisioning and the company's owners and admins.

A cap change locks the package the WABA charges, so no deduction of the WABA
is decided meanwhile; it recounts the WABA's capped spend in the current cycle
from its deductions (the categories may have changed) and writes an audit row
(who, when, the cap before and after). A cap lowered under what was spent
moves no money: it only refuses further capped spend. Setting the same cap
again changes nothing and is not audited.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain.caps import SpendCap
from wabapool.service.context import ServiceContext
from wabapool.service.models import WabaCap
from wabapool.service.pool_changes import lock_waba_package
from wabapool.storage import caps as cap_store


async def set_spend_cap(
    context: ServiceContext, company_id: int, waba_id: str, cap: SpendCap | None, *, changed_by: str
) -> WabaCap:
    """Set (or with None remove) the WABA's cap, in a transaction of its own; unknown WABA: `unknown_waba`."""
    at = context.clock()
    async with context.database.transaction() as connection:
        result = await apply_spend_cap(connection, company_id, waba_id, cap, changed_by=changed_by, at=at)
    await context.changed(company_id)
    return result


async def apply_spend_cap(
    connection: AsyncConnection,
    company_id: int,
    waba_id: str,
    cap: SpendCap | None,
    *,
    changed_by: str,
    at: datetime,
) -> WabaCap:
    """The cap change in the caller's transaction (provisioning sets it with the WABA)."""
    pool, caught_up = await lock_waba_package(connection, company_id, waba_id, at)
    cycle_start = caught_up.state.cycle_start
    old = await cap_store.get_cap(connection, company_id, waba_id)
    if cap is None:
        if old is not None:
            await cap_store.delete_cap(connection, company_id, waba_id)
            await cap_store.record_change(
                connection, company_id=company_id, waba_id=waba_id, changed_by=changed_by, old=old, new=None, at=at
            )
        return WabaCap(waba_id, None, None)
    if old != cap:
        await cap_store.put_cap(connection, company_id, waba_id, cap, at=at)
        await cap_store.record_change(
            connection, company_id=company_id, waba_id=waba_id, changed_by=changed_by, old=old, new=cap, at=at
        )
    spent = 0
    if cycle_start == pool.state.cycle_start:
        # A cycle that ended is left to its reset: the new one has spent nothing yet.
        spent = await cap_store.recompute_capped_spend(
            connection, company_id=company_id, waba_id=waba_id, cycle_start=cycle_start, cap=cap
        )
    return WabaCap(waba_id, cap, spent)


async def current_cap(connection: AsyncConnection, company_id: int, waba_id: str) -> SpendCap | None:
    """The WABA's cap as stored (provisioning answers with it when the request left it alone)."""
    return await cap_store.get_cap(connection, company_id, waba_id)
