"""The balance view (`billings/info`'s figures) from a pool's state: for a read, and for a write's write-through.

One function builds the view whether the pool was just read (`cycles.balance`)
or just written (`written_view`, from what `write_changes` returned), so the
value a write hands the cache is the value a read right after it would build.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from wabapool.domain import thresholds
from wabapool.domain.operations import PoolState
from wabapool.service.models import BalanceView, WabaSpend
from wabapool.storage.pools import LockedPool
from wabapool.storage.versions import Written


def view_of(
    pool: LockedPool, state: PoolState, wabas: Sequence[WabaSpend], *, at: datetime, version: int | None
) -> BalanceView:
    """The view of one shared pool in `state` (caught up to `at`), its WABAs with their spend this cycle."""
    buckets = state.buckets
    return BalanceView(
        company_id=state.company_id,
        billing_version=pool.billing_version,
        currency=pool.currency,
        total=buckets.total,
        available=buckets.available,
        allowance=buckets.initial_allowance,
        initial_remaining=buckets.initial_remaining,
        additional_remaining=buckets.additional_remaining,
        postpaid_limit=buckets.postpaid_limit,
        postpaid_used=buckets.postpaid_used,
        threshold_percent=thresholds.effective_threshold(state.threshold_percent),
        low_balance=state.is_low,
        below_zero=state.is_below_zero,
        cycle_starts_at=state.cycle_start,
        cycle_ends_at=state.cycle_end,
        wabas=tuple(wabas),
        as_of=at,
        timezone=state.timezone,
        funded_this_cycle=state.funded_base_minor,
        version=version,
    )


def written_view(company_id: int, written: Sequence[Written]) -> BalanceView | None:
    """The company's view after a committed write, from the write alone; None when the write cannot tell it.

    A v3 company's view is its one pool, so a write of that pool tells all of
    it. Anything else (several pools of the company, a v2 company whose view
    sums one package per WABA, a pool row not read from the database) is left
    to invalidation: the next read builds it from the database.
    """
    mine = [item for item in written if item.after.company_id == company_id]
    if len(mine) != 1:
        return None
    item = mine[0]
    if item.pool.billing_version != "v3" or not item.pool.currency:
        return None
    wabas = tuple(WabaSpend(w.waba_id, w.name, w.spent_this_cycle_minor) for w in item.wabas)
    return view_of(item.pool, item.after, wabas, at=item.at, version=item.version)
