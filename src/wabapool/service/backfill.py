"""The backfill: a v2 company's packages (one per WABA) moved into one shared pool, and its rollback.

One transaction per company, so a company is moved or untouched, never half:
a crash leaves the companies done so far moved and the rest as they were, and
a rerun picks up where it stopped (a moved company has no package of a WABA
left open: a second run finds nothing to do). The rules of the sums and of the
split back are `domain.migration`'s.

Deductions arriving meanwhile: the backfill locks every open package of the
company by id, in one statement, the way a deduction group locks the packages
it charges, so the two never deadlock. A group that was waiting finds its
package closed under the lock and asks again for the WABA's package, which is
now the pool (`unit_of_work.PackageMovedMeanwhile`): nothing is lost, nothing is
charged to a closed package.

Each company is verified inside its transaction, from the rows as written:
every WABA points at the pool, no package of a WABA is left open, and the sum
of every bucket over the company's open packages is what it was. A failed
check raises and the company stays untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NamedTuple, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain import limits, migration, operations
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.events import DomainEvent
from wabapool.domain.pool import Buckets, Move
from wabapool.service.context import Clock, ServiceContext
from wabapool.service.pool_changes import cycle_entries, write
from wabapool.storage import backfill as backfill_store
from wabapool.storage import companies as company_store
from wabapool.storage import ledger as ledger_store
from wabapool.storage import pools as pool_store
from wabapool.storage.changes import PoolChanges
from wabapool.storage.errors import StorageTimeout, StorageUnavailable
from wabapool.storage.types import Record

T = TypeVar("T")


class Money(NamedTuple):
    """The money of some packages, bucket by bucket (stored values) and as the pool total."""

    initial_remaining: int
    additional_remaining: int
    postpaid_used: int
    total: int

    @classmethod
    def of(cls, parts: Sequence[Buckets]) -> Money:
        return cls(
            sum(part.initial_remaining for part in parts),
            sum(part.additional_remaining for part in parts),
            sum(part.postpaid_used for part in parts),
            sum(part.total for part in parts),
        )


class BackfillBroken(Exception):
    """An invariant of the move failed on the rows as written (never expected): the transaction rolls back."""


@dataclass(frozen=True, slots=True)
class PackageFigures:
    """One package of the plan: its id, the WABAs charging it (none for the pool), its buckets caught up."""

    package_id: int
    waba_ids: tuple[str, ...]
    buckets: Buckets
    is_pool: bool


@dataclass(frozen=True, slots=True)
class Verification:
    """What the company looks like after the move, read back from the rows written."""

    wabas: int
    wabas_on_pool: int
    waba_packages_open: int
    before: Money
    after: Money

    @property
    def money_conserved(self) -> bool:
        return self.before == self.after

    @property
    def ok(self) -> bool:
        return self.money_conserved and self.wabas_on_pool == self.wabas and not self.waba_packages_open


@dataclass(frozen=True, slots=True)
class CompanyPlan:
    """What the backfill does to one company: the packages as they are (pool first), the pool they become."""

    company_id: int
    billing_version: str
    currency: str
    packages: list[PackageFigures]
    pool_after: Buckets
    cycle_start: datetime
    # The cycle's local start date (the company's timezone), as events and statements name it.
    cycle_label: str
    anchor_day: int
    new_pool: bool
    verification: Verification | None = None

    @property
    def moves_anything(self) -> bool:
        return any(not package.is_pool for package in self.packages)


@dataclass(frozen=True, slots=True)
class _Locked:
    """A company's packages under their locks, caught up to the same instant, in WABA order (pool first)."""

    company: Record
    pool: pool_store.LockedPool | None
    sources: list[pool_store.LockedPool]
    caught_up: dict[int, operations.Change]
    wabas: list[Record]
    at: datetime


async def _read_company(connection: AsyncConnection, company_id: int, clock: Clock, *, lock: bool) -> _Locked:
    """The company's open packages, locked by id like a deduction group's (`lock`), or only read (dry run).

    The instant of the move is read after the locks are taken: every deduction
    charged to an old package committed before it, so `closed_at` is later
    than the `created_at` of everything the package took.
    """
    company = await company_store.get_company(connection, company_id)
    if company is None:
        raise BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
    ids = await backfill_store.open_package_ids(connection, company_id)
    packages = await pool_store.load_packages(connection, company_id, ids, for_update=lock)
    if any(package.closed for package in packages.values()) or len(packages) != len(ids):
        # Moved or rolled back between the read of the ids and the lock: the caller tries again.
        raise StorageUnavailable("the company's packages changed while they were being locked")
    if lock and await backfill_store.open_package_ids(connection, company_id) != ids:
        raise StorageUnavailable("a package of the company was opened while its packages were being locked")
    at = clock()
    wabas = await company_store.list_wabas(connection, company_id)
    order = {waba.waba_id: index for index, waba in enumerate(wabas)}
    pools = [package for package in packages.values() if package.waba_id is None]
    sources = sorted(
        (package for package in packages.values() if package.waba_id is not None),
        key=lambda package: (order.get(package.waba_id or "", len(order)), package.package_id),
    )
    caught_up = {package_id: operations.catch_up(package.state, at) for package_id, package in packages.items()}
    return _Locked(company, pools[0] if pools else None, sources, caught_up, wabas, at)


def _pool_start(locked: _Locked) -> operations.PoolState:
    """The pool the money goes into: the company's (caught up), else a new empty one on the first WABA's cycle."""
    if locked.pool is not None:
        return locked.caught_up[locked.pool.package_id].state
    first = locked.caught_up[locked.sources[0].package_id].state
    return replace(first, buckets=Buckets(), funded_base_minor=0, below_zero_cycle_start=None, waba_id=None)


def _figures(locked: _Locked, merged: migration.Merge, pool_start: operations.PoolState) -> CompanyPlan:
    charging: dict[int | None, list[str]] = {}
    for waba in locked.wabas:
        charging.setdefault(waba.organization_package_id, []).append(waba.waba_id)
    packages = [
        PackageFigures(
            package.package_id,
            tuple(charging.get(package.package_id, [])),
            locked.caught_up[package.package_id].state.buckets,
            package.waba_id is None,
        )
        for package in ([locked.pool] if locked.pool is not None else []) + locked.sources
    ]
    return CompanyPlan(
        company_id=locked.company.company_id,
        billing_version=locked.company.billing_version,
        currency=locked.company.currency,
        packages=packages,
        pool_after=merged.pool.buckets,
        cycle_start=pool_start.cycle_start,
        cycle_label=pool_start.cycle_label,
        anchor_day=pool_start.anchor_day,
        new_pool=locked.pool is None,
    )


async def plan_company(context: ServiceContext, company_id: int) -> CompanyPlan:
    """The dry run: what the backfill would do to the company, read without a lock, nothing written."""
    async with context.database.read() as connection:
        locked = await _read_company(connection, company_id, context.clock, lock=False)
    if not locked.sources:
        return _nothing_to_move(locked)
    pool_start = _pool_start(locked)
    merged = migration.merge(pool_start, [locked.caught_up[source.package_id].state for source in locked.sources])
    return _figures(locked, merged, pool_start)


def _nothing_to_move(locked: _Locked) -> CompanyPlan:
    if locked.pool is None:
        raise BillingError(Rejection.NOT_SHARED_POOL, "the company has no package to move")
    state = locked.caught_up[locked.pool.package_id].state
    pool = PackageFigures(locked.pool.package_id, tuple(w.waba_id for w in locked.wabas), state.buckets, True)
    return CompanyPlan(
        locked.company.company_id,
        locked.company.billing_version,
        locked.company.currency,
        [pool],
        state.buckets,
        state.cycle_start,
        state.cycle_label,
        state.anchor_day,
        new_pool=False,
    )


def migration_entries(
    package: pool_store.LockedPool,
    moves: Sequence[Move],
    *,
    source: pool_store.LockedPool,
    cycle_start: datetime,
    at: datetime,
) -> list[ledger_store.LedgerRow]:
    """`migration` entries on `package`, each naming the WABA package the money came from (or goes back to)."""
    context = ledger_store.EntryContext(
        reference=backfill_store.migration_reference(source.package_id), cycle_start=cycle_start, waba_id=source.waba_id
    )
    return ledger_store.entry_rows(
        company_id=package.state.company_id, package_id=package.package_id, moves=moves, context=context, at=at
    )


async def _move(connection: AsyncConnection, locked: _Locked) -> CompanyPlan:
    """Write the move of one company, locked: the pool's new figures, every unit as a pair of entries."""
    at = locked.at
    pool_start = _pool_start(locked)
    sources = [locked.caught_up[source.package_id].state for source in locked.sources]
    merged = migration.merge(pool_start, sources)
    pool = locked.pool
    if pool is None:
        pool = await pool_store.create_pool(
            connection,
            company_id=pool_start.company_id,
            state=pool_start,
            threshold_percent=pool_start.threshold_percent,
            at=at,
        )
        pool_entries = []
        pool_events: list[DomainEvent] = []
    else:
        caught = locked.caught_up[pool.package_id]
        pool_entries, pool_events = cycle_entries(pool, caught, at=at), list(caught.events)
    changes = []
    for source, moved in zip(locked.sources, merged.sources, strict=True):
        caught = locked.caught_up[source.package_id]
        entries = cycle_entries(source, caught, at=at) + migration_entries(
            source, moved.moves, source=source, cycle_start=caught.state.cycle_start, at=at
        )
        changes.append(PoolChanges(pool=source, after=moved.state, entries=entries, events=caught.events))
        pool_entries += migration_entries(
            pool, moved.pool_moves, source=source, cycle_start=merged.pool.cycle_start, at=at
        )
    changes.append(PoolChanges(pool=pool, after=merged.pool, entries=pool_entries, events=pool_events))
    await write(connection, changes, at=at)
    await backfill_store.set_closed(
        connection, pool_start.company_id, [source.package_id for source in locked.sources], closed_at=at, at=at
    )
    await company_store.point_wabas(
        connection, pool_start.company_id, {waba.waba_id: pool.package_id for waba in locked.wabas}
    )
    await company_store.update_company(connection, pool_start.company_id, billing_version="v3", updated_at=at)
    before = Money.of([change.state.buckets for change in locked.caught_up.values()])
    verification = await verify(connection, pool_start.company_id, before=before)
    if not verification.ok:
        raise BackfillBroken(f"company {pool_start.company_id} failed its verification: {verification}")
    return replace(_figures(locked, merged, pool_start), verification=verification)


async def verify(connection: AsyncConnection, company_id: int, *, before: Money) -> Verification:
    """The company as stored now: where its WABAs point, its packages left open, the sum of their money."""
    packages = await pool_store.company_packages(connection, company_id, for_update=False)
    pools = [package.package_id for package in packages if package.waba_id is None]
    wabas = await company_store.list_wabas(connection, company_id)
    return Verification(
        wabas=len(wabas),
        wabas_on_pool=sum(1 for waba in wabas if len(pools) == 1 and waba.organization_package_id == pools[0]),
        waba_packages_open=sum(1 for package in packages if package.waba_id is not None),
        before=before,
        after=Money.of([package.state.buckets for package in packages]),
    )


async def in_company_attempts(
    context: ServiceContext, company_id: int, work: Callable[[AsyncConnection], Awaitable[T]]
) -> T:
    """One transaction for the company, taken again (within a limit) when a lock wait timed out or packages moved."""
    for attempt in range(limits.BACKFILL_COMPANY_ATTEMPTS):
        try:
            async with context.database.transaction() as connection:
                result = await work(connection)
        except (StorageTimeout, StorageUnavailable):
            if attempt + 1 == limits.BACKFILL_COMPANY_ATTEMPTS:
                raise
            continue
        await context.changed(company_id)
        return result
    raise StorageUnavailable("unreachable: the attempts loop returns or raises")


async def backfill_company(context: ServiceContext, company_id: int) -> CompanyPlan:
    """Move one company into its pool, in one transaction; a company with nothing left to move is a no-op."""

    async def work(connection: AsyncConnection) -> CompanyPlan:
        locked = await _read_company(connection, company_id, context.clock, lock=True)
        if not locked.sources:
            return _nothing_to_move(locked)
        return await _move(connection, locked)

    plan: CompanyPlan = await in_company_attempts(context, company_id, work)
    return plan


async def companies_to_move(context: ServiceContext) -> list[int]:
    """Every company with a WABA still on a package of its own, in id order (what `--all` moves)."""
    async with context.database.read() as connection:
        return await backfill_store.companies_to_move(connection)


async def backfill_all(
    context: ServiceContext,
    company_ids: Sequence[int],
    *,
    on_company: Callable[[CompanyPlan], None] | None = None,
    on_refused: Callable[[int, BillingError], None] | None = None,
) -> list[CompanyPlan]:
    """Move each company in turn, each in its own transaction; `on_company` hears of each (the progress bar).

    A company the rules refuse (its packages would sum past the ceiling on money, say) is left on its
    packages, nothing of it written: with `on_refused` the run tells it and goes on to the next company
    (one company's refusal must not hold up the others'); without, the refusal is raised.
    """
    done = []
    for company_id in company_ids:
        try:
            plan = await backfill_company(context, company_id)
        except BillingError as refusal:
            if on_refused is None:
                raise
            on_refused(company_id, refusal)
            continue
        done.append(plan)
        if on_company is not None:
            on_company(plan)
    return done
