"""The cycle reset of every package, and the balance as of now (a due reset shown as if it had run)."""

from __future__ import annotations

from datetime import datetime

from wabapool.domain import operations, thresholds
from wabapool.service.context import ServiceContext
from wabapool.service.models import BalanceView, PackageFigures, WabaSpend
from wabapool.service.pool_changes import missing_pool, pool_changes
from wabapool.storage import companies as company_store
from wabapool.storage import ledger as ledger_store
from wabapool.storage import pools as pool_store
from wabapool.storage import statements as statement_store
from wabapool.storage.changes import write_changes


async def reset_cycles(context: ServiceContext, *, at: datetime | None = None) -> dict[int, int]:
    """Catch every open package up to the cycle in force at `at`; returns cycles reset per company.

    Each package in its own transaction under its lock: the cycle a package is
    in is read under the lock, so however many callers race, one cycle resets once.
    """
    at = at or context.clock()
    async with context.database.read() as connection:
        packages = await pool_store.open_package_ids(connection)
    reset: dict[int, int] = {}
    for company_id, package_id in packages:
        cycles_reset = 0
        async with context.database.transaction() as connection:
            pool = (await pool_store.load_packages(connection, [package_id], for_update=True)).get(package_id)
            if pool is None or pool.closed:
                continue  # moved into the pool by the backfill since the list was read
            caught_up = operations.catch_up(pool.state, at)
            if caught_up.state.cycle_start != pool.state.cycle_start:
                nothing = operations.Change(caught_up.state)
                changes = pool_changes(
                    pool, caught_up, nothing, reference=f"cycle:{caught_up.state.cycle_label}", at=at
                )
                await write_changes(connection, [changes], at=at)
                cycles_reset = len(caught_up.events)
        if cycles_reset:
            reset[company_id] = reset.get(company_id, 0) + cycles_reset
            await context.changed(company_id)
    return reset


async def any_due(context: ServiceContext, *, at: datetime) -> bool:
    """Whether some package's cycle has ended by `at`."""
    async with context.database.read() as connection:
        return await statement_store.any_cycle_due(connection, at=at)


def _figures(state: operations.PoolState) -> PackageFigures:
    buckets = state.buckets
    return PackageFigures(
        total=buckets.total,
        available=buckets.available,
        allowance=buckets.initial_allowance,
        initial_remaining=buckets.initial_remaining,
        additional_remaining=buckets.additional_remaining,
        postpaid_limit=buckets.postpaid_limit,
        postpaid_used=buckets.postpaid_used,
        cycle_ends_at=state.cycle_end,
    )


async def balance(context: ServiceContext, company_id: int) -> BalanceView:
    """The company's balance as of now (a due reset shown as if it had run).

    A v3 company's is its pool's; where WABAs have packages of their own (v2,
    or added with the flag off) each carries its own, and the company's
    figures are the sum of all its open packages. The cycle shown is the
    pool's, or for v2 the package whose cycle ends first (the next reset).
    """
    at = context.clock()
    async with context.database.read() as connection:
        packages = await pool_store.company_packages(connection, company_id, for_update=False)
        if not packages:
            raise await missing_pool(connection, company_id)
        states = {p.package_id: operations.catch_up(p.state, at).state for p in packages}
        wabas = await company_store.list_wabas(connection, company_id)
        spend: dict[datetime, dict[str, int]] = {}
        for cycle_start in {state.cycle_start for state in states.values()}:
            spend[cycle_start] = await ledger_store.waba_spend(
                connection, company_id=company_id, cycle_start=cycle_start
            )
    first = packages[0]
    shown = states[first.package_id] if first.waba_id is None else min(states.values(), key=lambda s: s.cycle_end)
    figures = [_figures(state) for state in states.values()]
    spent = []
    for waba in wabas:
        state = states.get(waba.organization_package_id)
        own = state is not None and state.waba_id is not None
        spent.append(
            WabaSpend(
                waba.waba_id,
                waba.name,
                0 if state is None else spend[state.cycle_start].get(waba.waba_id, 0),
                _figures(state) if own and state is not None else None,
            )
        )
    return BalanceView(
        company_id=company_id,
        billing_version=first.billing_version,
        currency=first.currency,
        total=sum(f.total for f in figures),
        available=sum(f.available for f in figures),
        allowance=sum(f.allowance for f in figures),
        initial_remaining=sum(f.initial_remaining for f in figures),
        additional_remaining=sum(f.additional_remaining for f in figures),
        postpaid_limit=sum(f.postpaid_limit for f in figures),
        postpaid_used=sum(f.postpaid_used for f in figures),
        threshold_percent=thresholds.effective_threshold(shown.threshold_percent),
        low_balance=any(state.is_low for state in states.values()),
        below_zero=any(state.is_below_zero for state in states.values()),
        cycle_starts_at=shown.cycle_start,
        cycle_ends_at=shown.cycle_end,
        wabas=tuple(spent),
        as_of=at,
        timezone=shown.timezone,
        funded_this_cycle=sum(state.funded_base_minor for state in states.values()),
    )
