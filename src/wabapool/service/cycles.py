"""The cycle reset of every package, and the balance as of now (a due reset shown as if it had run)."""

from __future__ import annotations

from datetime import datetime

from wabapool.domain import operations
from wabapool.service.balance_view import view_of
from wabapool.service.context import ServiceContext
from wabapool.service.models import BalanceView, WabaSpend
from wabapool.service.pool_changes import missing_pool, pool_changes, write
from wabapool.storage import caps as cap_store
from wabapool.storage import companies as company_store
from wabapool.storage import ledger as ledger_store
from wabapool.storage import package_scans
from wabapool.storage import pools as pool_store
from wabapool.storage import statements as statement_store
from wabapool.storage.versions import Written


async def reset_cycles(context: ServiceContext, *, at: datetime | None = None) -> dict[int, int]:
    """Catch every open package up to the cycle in force at `at`; returns cycles reset per company.

    Each package in its own transaction under its lock: the cycle a package is
    in is read under the lock, so however many callers race, one cycle resets once.
    """
    at = at or context.clock()
    async with context.database.read() as connection:
        # Only those due: the others would lock, find nothing to do and commit nothing.
        packages = await package_scans.due_package_ids(connection, at=at)
    reset: dict[int, int] = {}
    for company_id, package_id in packages:
        cycles_reset = 0
        written: list[Written] = []
        async with context.database.transaction() as connection:
            pool = (await pool_store.load_packages(connection, company_id, [package_id], for_update=True)).get(
                package_id
            )
            if pool is None or pool.closed:
                continue  # moved into the pool by the backfill since the list was read
            caught_up = operations.catch_up(pool.state, at)
            if caught_up.state.cycle_start != pool.state.cycle_start:
                nothing = operations.Change(caught_up.state)
                changes = pool_changes(
                    pool, caught_up, nothing, reference=f"cycle:{caught_up.state.cycle_label}", at=at
                )
                written = await write(connection, [changes], at=at)
                cycles_reset = len(caught_up.events)
        if cycles_reset:
            reset[company_id] = reset.get(company_id, 0) + cycles_reset
            await context.changed(company_id, written)
    return reset


async def any_due(context: ServiceContext, *, at: datetime) -> bool:
    """Whether some package's cycle has ended by `at`."""
    async with context.database.read() as connection:
        return await statement_store.any_cycle_due(connection, at=at)


async def balance(context: ServiceContext, company_id: int) -> BalanceView:
    """The company's balance as of now (a due reset shown as if it had run); see `balance_view.view_of`."""
    at = context.clock()
    async with context.database.read() as connection:
        packages = await pool_store.company_packages(connection, company_id, for_update=False)
        if not packages:
            raise await missing_pool(connection, company_id)
        states = [operations.catch_up(p.state, at).state for p in packages]
        wabas = await company_store.list_wabas(connection, company_id)
        caps = await cap_store.company_caps(connection, company_id)
        spend: dict[datetime, dict[str, int]] = {}
        for cycle_start in {state.cycle_start for state in states}:
            spend[cycle_start] = await ledger_store.waba_spend(
                connection, company_id=company_id, cycle_start=cycle_start
            )
    package_states = dict(zip((p.package_id for p in packages), states, strict=True))
    spent = []
    for waba in wabas:
        state = package_states.get(waba.organization_package_id)
        amount = 0 if state is None else spend[state.cycle_start].get(waba.waba_id, 0)
        cap, capped = caps.get(waba.waba_id, (None, {}))
        spent.append(
            WabaSpend(
                waba.waba_id,
                waba.name,
                amount,
                package_id=waba.organization_package_id,
                spend_cap=cap,
                cap_spent=None if cap is None else (0 if state is None else capped.get(state.cycle_start, 0)),
            )
        )
    # One package tells the whole view and orders it in the cache; a sum of several is ordered by the fence.
    version = packages[0].version if len(packages) == 1 else None
    return view_of(list(zip(packages, states, strict=True)), spent, at=at, version=version)
