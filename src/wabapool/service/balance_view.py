"""The balance view (`billings/info`'s figures) from the packages' states: for a read, and for a write-through.

One function builds the view whether the packages were just read
(`cycles.balance`) or just written (`written_view`, from what `write_changes`
returned), so the value a write hands the cache is the value a read right
after it would build.

A v3 company's view is its pool's. Where WABAs have packages of their own (v2,
or added with `waba_save_organization_id` off) each carries its own balance,
and the company's figures are the sum of all its open packages; the cycle
shown is the pool's, or without one the package whose cycle ends first (the
next reset), and `low_balance` / `below_zero` hold when any package is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from wabapool.domain import thresholds
from wabapool.domain.operations import PoolState
from wabapool.service.models import BalanceView, PackageFigures, WabaSpend
from wabapool.storage.pools import LockedPool
from wabapool.storage.versions import Written


def figures_of(state: PoolState) -> PackageFigures:
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


def view_of(
    packages: Sequence[tuple[LockedPool, PoolState]],
    wabas: Sequence[WabaSpend],
    *,
    at: datetime,
    version: int | None,
) -> BalanceView:
    """The company's view: its open packages (pool first) in their states caught up to `at`, its WABAs' spend."""
    first, _ = packages[0]
    states = {pool.package_id: state for pool, state in packages}
    shown = states[first.package_id] if first.waba_id is None else min(states.values(), key=lambda s: s.cycle_end)
    figures = [figures_of(state) for state in states.values()]
    requested = next((state for state in states.values() if state.top_up_request is not None), None)
    shown_wabas = []
    for waba in wabas:
        own = states.get(waba.package_id) if waba.package_id is not None else None
        shown_wabas.append(replace(waba, balance=figures_of(own) if own is not None and own.waba_id else None))
    return BalanceView(
        company_id=first.state.company_id,
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
        wabas=tuple(shown_wabas),
        as_of=at,
        timezone=shown.timezone,
        funded_this_cycle=sum(state.funded_base_minor for state in states.values()),
        version=version,
        top_up_request=None if requested is None else requested.top_up_request,
        top_up_request_waba_id=None if requested is None else requested.waba_id,
    )


def written_view(company_id: int, written: Sequence[Written]) -> BalanceView | None:
    """The company's view after a committed write, from the write alone; None when the write cannot tell it.

    A company whose every WABA spends from its one pool has the pool's view, so
    a write of that pool tells all of it. Anything else (several packages of
    the company, a v2 company, a WABA on another package, a pool row not read
    from the database) is left to invalidation: the next read builds it.
    """
    mine = [item for item in written if item.after.company_id == company_id]
    if len(mine) != 1:
        return None
    item = mine[0]
    pool = item.pool
    if pool.billing_version != "v3" or not pool.currency or pool.waba_id is not None:
        return None
    if any(w.package_id != pool.package_id for w in item.wabas):
        return None
    wabas = [
        WabaSpend(
            w.waba_id,
            w.name,
            w.spent_this_cycle_minor,
            package_id=w.package_id,
            spend_cap=w.spend_cap,
            cap_spent=None if w.spend_cap is None else w.cap_spent_minor,
        )
        for w in item.wabas
    ]
    return view_of([(pool, item.after)], wabas, at=item.at, version=item.version)
