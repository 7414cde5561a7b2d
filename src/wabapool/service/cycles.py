"""The cycle reset of every pool, and the balance as of now (a due reset shown as if it had run)."""

from __future__ import annotations

from datetime import datetime

from wabapool.domain import operations
from wabapool.service.balance_view import view_of
from wabapool.service.context import ServiceContext
from wabapool.service.models import BalanceView, WabaSpend
from wabapool.service.pool_changes import lock_pool, pool_changes
from wabapool.storage import companies as company_store
from wabapool.storage import ledger as ledger_store
from wabapool.storage import pools as pool_store
from wabapool.storage import statements as statement_store
from wabapool.storage.changes import write_changes
from wabapool.storage.versions import Written


async def reset_cycles(context: ServiceContext, *, at: datetime | None = None) -> dict[int, int]:
    """Catch every pool up to the cycle in force at `at`; returns cycles reset per company.

    Each pool in its own transaction under its lock: the cycle a pool is in is
    read under the lock, so however many callers race, one cycle resets once.
    """
    at = at or context.clock()
    async with context.database.read() as connection:
        company_ids = await pool_store.pool_company_ids(connection)
    reset: dict[int, int] = {}
    for company_id in company_ids:
        written: list[Written] = []
        async with context.database.transaction() as connection:
            pool, caught_up = await lock_pool(connection, company_id, at)
            if caught_up.state.cycle_start != pool.state.cycle_start:
                nothing = operations.Change(caught_up.state)
                changes = pool_changes(
                    pool, caught_up, nothing, reference=f"cycle:{caught_up.state.cycle_label}", at=at
                )
                written = await write_changes(connection, [changes], at=at)
                reset[company_id] = len(caught_up.events)
        if written:
            await context.changed(company_id, written)
    return reset


async def any_due(context: ServiceContext, *, at: datetime) -> bool:
    """Whether some pool's cycle has ended by `at`."""
    async with context.database.read() as connection:
        return await statement_store.any_cycle_due(connection, at=at)


async def balance(context: ServiceContext, company_id: int) -> BalanceView:
    """The aggregated pool as of now (a due reset is shown as if it had run)."""
    at = context.clock()
    async with context.database.read() as connection:
        pool, caught_up = await lock_pool(connection, company_id, at, for_update=False)
        state = caught_up.state
        wabas = await company_store.list_wabas(connection, company_id)
        spend = await ledger_store.waba_spend(connection, company_id=company_id, cycle_start=state.cycle_start)
    return view_of(
        pool,
        state,
        tuple(WabaSpend(w.waba_id, w.name, spend.get(w.waba_id, 0)) for w in wabas),
        at=at,
        version=pool.version,
    )
