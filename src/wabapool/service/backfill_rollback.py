"""The backfill's rollback: a moved company's WABA packages reopened with their money, the pool closed.

Exact when the pool has not changed since the backfill (no entry on it but
the backfill's, its cycle not ended): each package gets back what its
`migration` entries say it gave, and the terms it kept while closed. Otherwise
the pool's balance is split back (`domain.migration.split`): shown first, and
written only with `confirm`. Money moves as `migration` entries both ways, in
one transaction; the packages are locked in id order like a deduction group's,
the pool is closed before the packages are reopened (the partial unique
indexes allow one open pool per company and one open package per WABA).

Only a pool the backfill created is rolled back (closed, the company back to
v2). A merge into a pool that existed before (a v3 company's flag-off WABAs)
is refused: moving a WABA back out would change its package while the pool
stays open, and every process's `deductions.WabaPackages` remembers a WABA's
package until that package closes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain import migration, operations
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.pool import Buckets, Move, QuotaType
from wabapool.service.backfill import BackfillBroken, Money, in_company_attempts, migration_entries
from wabapool.service.context import Clock, ServiceContext
from wabapool.service.pool_changes import cycle_entries, write
from wabapool.storage import backfill as backfill_store
from wabapool.storage import companies as company_store
from wabapool.storage import pools as pool_store
from wabapool.storage.changes import PoolChanges
from wabapool.storage.errors import StorageUnavailable
from wabapool.storage.types import Record


@dataclass(frozen=True, slots=True)
class RollbackPart:
    """One package of the rollback: what it brought to the pool, and what it gets back."""

    package_id: int
    waba_id: str | None
    brought: Buckets
    share: Buckets


@dataclass(frozen=True, slots=True)
class RollbackPlan:
    company_id: int
    pool_id: int
    exact: bool
    pool_before: Buckets
    parts: list[RollbackPart]
    # What the pool keeps when it closes: nothing, once every part has its share.
    pool_after: Buckets
    applied: bool = False

    @property
    def money_conserved(self) -> bool:
        after = [part.share for part in self.parts] + [self.pool_after]
        return Money.of([self.pool_before]) == Money.of(after)


@dataclass(frozen=True, slots=True)
class _Moved:
    company: Record
    backfilled_at: datetime
    pool: pool_store.LockedPool
    caught_up: operations.Change
    packages: list[pool_store.LockedPool]
    brought: list[Buckets]
    wabas: list[Record]
    at: datetime


class RollbackRefused(BillingError):
    """The company cannot be rolled back as asked (never moved, or a WABA joined the pool since)."""

    def __init__(self, message: str) -> None:
        super().__init__(Rejection.INVALID_REQUEST, message)


async def _read(connection: AsyncConnection, company_id: int, clock: Clock, *, lock: bool) -> _Moved:
    """The pool and the packages the last backfill closed, locked in id order (`lock`), caught up after the locks."""
    company = await company_store.get_company(connection, company_id)
    if company is None:
        raise BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
    moved = await backfill_store.last_moved(connection, company_id)
    open_pool = await pool_store.load_pool(connection, company_id, for_update=False)
    if moved is None or open_pool is None:
        raise RollbackRefused(f"company {company_id} has no backfill to roll back")
    backfilled_at, package_ids = moved
    locked = await pool_store.load_packages(
        connection, company_id, [open_pool.package_id, *package_ids], for_update=lock
    )
    pool = locked.get(open_pool.package_id)
    if pool is None or pool.closed or any(not locked[package_id].closed for package_id in package_ids):
        raise StorageUnavailable("the company's packages changed while they were being locked")
    # A pool the backfill opened was created at its instant, after every package it moved (ids only grow).
    created = pool.package_id > max(package_ids) and (
        await backfill_store.package_created_at(connection, company_id, pool.package_id) == backfilled_at
    )
    if not created:
        raise RollbackRefused(
            f"company {company_id}'s WABA packages were merged into a pool it already had: "
            "moving them out would change a WABA's package while the pool stays open"
        )
    at = clock()
    wabas = await company_store.list_wabas(connection, company_id)
    moved_wabas = {locked[package_id].waba_id for package_id in package_ids}
    joined_since = [waba.waba_id for waba in wabas if waba.waba_id not in moved_wabas]
    if joined_since:
        raise RollbackRefused(
            f"WABAs {', '.join(joined_since)} joined the pool since the backfill: no package to go back to"
        )
    order = {waba.waba_id: index for index, waba in enumerate(wabas)}
    packages = sorted(
        (locked[i] for i in package_ids), key=lambda p: (order.get(p.waba_id or "", len(order)), p.package_id)
    )
    given = await backfill_store.moved_out(connection, company_id, package_ids, at=backfilled_at)
    brought = [_brought(package.state.buckets, given[package.package_id]) for package in packages]
    caught_up = operations.catch_up(pool.state, at)
    return _Moved(company, backfilled_at, pool, caught_up, packages, brought, wabas, at)


def _brought(kept: Buckets, given: dict[QuotaType, int]) -> Buckets:
    """A closed package as it was: the terms it kept, the money its migration entries gave the pool."""
    return kept._replace(
        initial_remaining=kept.initial_remaining + given.get(QuotaType.INITIAL, 0),
        additional_remaining=kept.additional_remaining + given.get(QuotaType.ADDITIONAL, 0),
        postpaid_used=kept.postpaid_used + given.get(QuotaType.POSTPAID, 0),
    )


async def _decide(connection: AsyncConnection, moved: _Moved) -> tuple[bool, list[Buckets], Buckets]:
    """Exact (each part what it brought) when the pool has not changed since; else the split back."""
    pool = moved.caught_up.state
    unchanged = pool.cycle_start == moved.pool.state.cycle_start and not await backfill_store.changed_since(
        connection, moved.company.company_id, moved.pool.package_id, at=moved.backfilled_at
    )
    if unchanged:
        try:
            left = migration.unmerge(pool.buckets, moved.brought)
        except ValueError:
            left = None
        if left == Buckets():
            return True, list(moved.brought), left
    return False, migration.split(pool.buckets, moved.brought), Buckets()


def _plan(moved: _Moved, exact: bool, shares: list[Buckets], left: Buckets) -> RollbackPlan:
    parts = [
        RollbackPart(package.package_id, package.waba_id, brought, share)
        for package, brought, share in zip(moved.packages, moved.brought, shares, strict=True)
    ]
    return RollbackPlan(
        company_id=moved.company.company_id,
        pool_id=moved.pool.package_id,
        exact=exact,
        pool_before=moved.caught_up.state.buckets,
        parts=parts,
        pool_after=left,
    )


async def plan_rollback(context: ServiceContext, company_id: int) -> RollbackPlan:
    """What the rollback would do, read without a lock, nothing written."""
    async with context.database.read() as connection:
        moved = await _read(connection, company_id, context.clock, lock=False)
        return _plan(moved, *await _decide(connection, moved))


def _restored_states(moved: _Moved, plan: RollbackPlan) -> tuple[list[operations.PoolState], list[int]]:
    """Each package's state once reopened: exact, as it was; split, on the pool's cycle with its share of the base."""
    pool = moved.caught_up.state
    if plan.exact:
        return [replace(p.state, buckets=part.share) for p, part in zip(moved.packages, plan.parts, strict=True)], [
            p.state.funded_base_minor for p in moved.packages
        ]
    brought = [p.state.funded_base_minor for p in moved.packages]
    funded = migration.split_funded(pool.funded_base_minor, brought)
    states = [
        replace(
            p.state,
            buckets=part.share,
            cycle_start=pool.cycle_start,
            cycle_end=pool.cycle_end,
            anchor_day=pool.anchor_day,
            funded_base_minor=funded[i],
            below_zero_cycle_start=None,
        )
        for i, (p, part) in enumerate(zip(moved.packages, plan.parts, strict=True))
    ]
    states = [replace(state, low_balance_armed=not state.is_low) for state in states]
    return states, funded[: len(states)]


def _give_back(moved: _Moved, plan: RollbackPlan, at: datetime) -> list[PoolChanges]:
    """Every part's share moved from the pool to its package as `migration` entries; the pool keeps the rest."""
    states, funded = _restored_states(moved, plan)
    pool_buckets = moved.caught_up.state.buckets
    pool_entries = cycle_entries(moved.pool, moved.caught_up, at=at)
    changes = []
    for package, part, state in zip(moved.packages, plan.parts, states, strict=True):
        package_buckets = migration.terms_only(part.share)
        package_moves: list[Move] = []
        pool_moves: list[Move] = []
        for quota_type in migration.MOVED_BUCKETS:
            amount = part.share.value(quota_type)
            if amount:
                pool_buckets, package_buckets, taken, added = migration.transfer(
                    pool_buckets, package_buckets, quota_type, amount
                )
                pool_moves.append(taken)
                package_moves.append(added)
        if package_buckets != part.share:
            raise BackfillBroken(f"package {package.package_id} restored as {package_buckets}, not {part.share}")
        entries = migration_entries(package, package_moves, source=package, cycle_start=state.cycle_start, at=at)
        changes.append(PoolChanges(pool=package, after=state, entries=entries))
        pool_entries += migration_entries(
            moved.pool, pool_moves, source=package, cycle_start=moved.caught_up.state.cycle_start, at=at
        )
    pool_buckets = plan.pool_after._replace(
        initial_remaining=pool_buckets.initial_remaining,
        additional_remaining=pool_buckets.additional_remaining,
        postpaid_used=pool_buckets.postpaid_used,
    )
    if pool_buckets != plan.pool_after:
        raise BackfillBroken(f"the pool keeps {pool_buckets}, not {plan.pool_after}")
    pool_funded = max(moved.caught_up.state.funded_base_minor - sum(funded), 0)
    pool_after = replace(moved.caught_up.state, buckets=pool_buckets, funded_base_minor=pool_funded)
    changes.append(PoolChanges(pool=moved.pool, after=pool_after, entries=pool_entries, events=moved.caught_up.events))
    return changes


async def _roll_back(connection: AsyncConnection, moved: _Moved, plan: RollbackPlan, at: datetime) -> None:
    """Close the pool, reopen the packages with their shares, point the WABAs back, the company v2 again."""
    company_id = plan.company_id
    # Closed first: the pool's open index then has room, whatever opens next.
    await backfill_store.set_closed(connection, company_id, [plan.pool_id], closed_at=at, at=at)
    await backfill_store.set_closed(
        connection, company_id, [part.package_id for part in plan.parts], closed_at=None, at=at
    )
    await write(connection, _give_back(moved, plan, at), at=at)
    await company_store.point_wabas(
        connection, company_id, {p.waba_id: p.package_id for p in moved.packages if p.waba_id is not None}
    )
    await company_store.update_company(connection, company_id, billing_version="v2", updated_at=at)
    involved = [plan.pool_id, *(part.package_id for part in plan.parts)]
    after = await pool_store.load_packages(connection, company_id, involved, for_update=False)
    if Money.of([package.state.buckets for package in after.values()]) != Money.of([plan.pool_before]):
        raise BackfillBroken(f"company {company_id}: the rollback did not conserve money")


async def rollback_company(context: ServiceContext, company_id: int, *, confirm: bool = False) -> RollbackPlan:
    """Roll one company back in one transaction; a split (the pool changed since) is written only with `confirm`."""

    async def work(connection: AsyncConnection) -> RollbackPlan:
        moved = await _read(connection, company_id, context.clock, lock=True)
        plan = _plan(moved, *await _decide(connection, moved))
        if not plan.exact and not confirm:
            return plan
        await _roll_back(connection, moved, plan, moved.at)
        return replace(plan, applied=True)

    plan: RollbackPlan = await in_company_attempts(context, company_id, work)
    return plan
