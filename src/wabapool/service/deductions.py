"""A group of one company's deductions, applied in one unit of work, each with its own outcome.

The use case between the queue (`group_commit`, step 1) and the pure decision
(`domain.deduction.decide`, step 3): in a transaction opened by the unit of
work (`unit_of_work.run`, step 2) it locks every package the group charges
once, has the decision answer each item in memory, and hands what was decided
to the one write (`pool_changes.write`). A rejected item takes nothing and
never fails its neighbours. A lone deduction (a group of one) is first tried
without the lock (`DeductionGroups._apply_unlocked`): two round trips instead
of four, written only if the package did not move meanwhile.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple, cast

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain import deduction, operations
from wabapool.domain.caps import CapState
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.pricing import PriceBook, PriceEntry
from wabapool.metrics import DEDUCTION_GROUPS
from wabapool.service import unit_of_work
from wabapool.service.contended_pools import ContendedPools
from wabapool.service.context import ServiceContext
from wabapool.service.deduction_rows import Key, Prepared, key_of, pool_changes_of, replay_of, result_of
from wabapool.service.models import BatchItemResult
from wabapool.service.pool_changes import write
from wabapool.service.price_books import PriceBooks
from wabapool.service.waba_packages import WabaPackages
from wabapool.storage import caps as cap_store
from wabapool.storage import companies as company_store
from wabapool.storage import pools as pool_store
from wabapool.storage import requests as request_store
from wabapool.storage.changes import fits_one_statement, write_if_unmoved
from wabapool.storage.errors import UniqueConflict
from wabapool.storage.group_lock import lock_group, read_group
from wabapool.storage.types import Record
from wabapool.storage.versions import Written

_Outcome = deduction.Outcome[Prepared]


class GroupApplied(NamedTuple):
    """What a group's transaction decided and wrote; the answers are built after commit, outside the lock."""

    outcomes: Sequence[_Outcome | BatchItemResult]
    ids: dict[Key, int]
    changed: frozenset[int]  # the companies whose packages the group wrote
    written: Sequence[Written] = ()  # what the packages became, for the balance cache

    def results(self) -> list[BatchItemResult]:
        """Every outcome final, with the ids the database gave the rows this group wrote."""
        return [_answer(outcome, self.ids) for outcome in self.outcomes]


def _answer(outcome: _Outcome | BatchItemResult, ids: dict[Key, int]) -> BatchItemResult:
    """One item's answer: the decision's outcome with the id its row was given."""
    if isinstance(outcome, BatchItemResult):
        return outcome
    if isinstance(outcome, deduction.Applied):
        return BatchItemResult(outcome.item.unique_code, "applied", result=result_of(outcome, ids[key_of(outcome)]))
    if isinstance(outcome, deduction.RepeatInGroup):
        first = outcome.first
        return BatchItemResult(
            first.item.unique_code, "replayed", result=result_of(first, ids[key_of(first)], replayed=True)
        )
    if isinstance(outcome, deduction.Replay):
        row = cast(Record, outcome.stored)  # the decision was handed the rows `_stored` read
        return BatchItemResult(row.unique_code, "replayed", result=replay_of(row))
    return BatchItemResult(outcome.unique_code, "rejected", error=outcome.error)


class DeductionGroups:
    """Applies a group of deductions (of one company or many) in one unit of work; the queue's `apply`."""

    def __init__(
        self,
        context: ServiceContext,
        packages: WabaPackages | None = None,
        prices: PriceBooks | None = None,
        contended: ContendedPools | None = None,
    ) -> None:
        self._context = context
        self._packages = packages or WabaPackages()
        self._prices = prices or PriceBooks()
        self._contended = contended or ContendedPools()

    async def apply(self, items: Sequence[Prepared]) -> list[BatchItemResult]:
        """One result per item, in order, once the group's write has committed.

        A lone deduction is first tried without the pool's lock (`_apply_unlocked`), unless its pool was
        found busy a moment ago (`ContendedPools`); whatever that path does not take, or finds moved, goes
        through the locked transaction. A group of several is already a sign of a busy pool or a batch.
        """
        at = self._context.clock()
        database = self._context.database
        codes_taken = False
        if (
            len(items) == 1
            and database.writes_outside_transaction
            and not self._contended.contended(items[0].request.company_id)
        ):
            try:
                unlocked = await self._apply_unlocked(items, at)
            except UniqueConflict:
                codes_taken = True  # a code was applied before: the locked path looks the codes up, answers the replay
            else:
                if unlocked is not None:
                    DEDUCTION_GROUPS.labels("unlocked").inc()
                    if unlocked.changed:
                        await self._tell_cache(unlocked)
                    return unlocked.results()

        async def body(unit: unit_of_work.UnitOfWork) -> GroupApplied:
            applied = await apply_group(unit, items, at=at, packages=self._packages, prices=self._prices)
            if applied.changed:
                unit.after_commit(lambda: self._tell_cache(applied))
            return applied

        applied = await unit_of_work.run(database, body, codes_taken=codes_taken)
        DEDUCTION_GROUPS.labels("locked").inc()
        return applied.results()

    async def _apply_unlocked(self, items: Sequence[Prepared], at: datetime) -> GroupApplied | None:
        """The group read without a lock and written in one statement guarded by the package's version:
        two round trips where the transaction takes four (BEGIN, lock, write, COMMIT). None, with nothing
        written, when the path does not apply (`apply_group`'s `unlocked`) or the package moved meanwhile."""
        async with self._context.database.autocommit() as connection:
            try:
                return await apply_group(
                    unit_of_work.UnitOfWork(connection),
                    items,
                    at=at,
                    packages=self._packages,
                    prices=self._prices,
                    unlocked=True,
                )
            except TakeTheLock as taken:
                DEDUCTION_GROUPS.labels("unlocked_moved" if taken.moved else "unlocked_declined").inc()
                if taken.moved:
                    self._contended.found_moved(items[0].request.company_id)
                return None

    async def _tell_cache(self, applied: GroupApplied) -> None:
        """Every changed company's new balance to the cache, together (each answers for its own failure)."""
        await asyncio.gather(*(self._context.changed(company_id, applied.written) for company_id in applied.changed))


class _Part(NamedTuple):
    """One company's share of a group: where its items stand in the group, and the packages its WABAs charge."""

    company_id: int
    positions: list[int]
    package_of: dict[str, int | None]


class TakeTheLock(Exception):
    """The group read without a lock cannot be written that way, or its package moved (`moved`): nothing
    was written; apply it in the locked transaction."""

    def __init__(self, *, moved: bool = False) -> None:
        super().__init__("the package moved" if moved else "the group needs the lock")
        self.moved = moved


async def apply_group(
    unit: unit_of_work.UnitOfWork,
    items: Sequence[Prepared],
    *,
    at: datetime,
    packages: WabaPackages,
    prices: PriceBooks,
    unlocked: bool = False,
) -> GroupApplied:
    """Apply valid deductions of one or more companies: the outcomes in order, the rows' ids, who changed.

    Each deduction charges the package of its WABA: its company's pool, or the
    WABA's own (v2). The group locks every package it charges in one
    statement, in (company, package id) order, so groups of different
    processes and the backfill never deadlock. Each company's items are decided
    with the same pure rules as alone (`domain.deduction.decide`); every
    package's rows go in one write.

    Unless an earlier attempt found a code taken (`unit.codes_taken`), the
    codes are taken to be new (the common case, one query fewer); a taken one
    fails the insert (UniqueConflict) or shows among the refused, and the unit
    of work tries again with the look-up. The WABAs' packages are remembered
    (`WabaPackages`), the prices kept per process (`PriceBooks`); one statement
    locks the packages, reserves the rows' ids and reads the price list's
    version (`group_lock.lock_group`), and caps are read only for packages
    flagged as having them. On an idle pool with everything remembered, a lone
    deduction is four statements: BEGIN, the lock, the write, COMMIT.

    `unlocked` (a connection outside a transaction, `Database.autocommit`): the
    packages are read without their lock and the group written in one statement
    guarded by the version read (`changes.write_if_unmoved`), so a lone deduction
    is two statements. Only for a group that charges one package with no capped
    WABA, whose items all apply, and whose write is that one statement (events
    and a moved warning state go in it; a new cycle, a cycle's statements or a
    moved threshold do not); anything else raises TakeTheLock
    before writing, as does a package that moved between the read and the write.
    """
    connection = unit.connection
    outcomes: list[_Outcome | BatchItemResult | None] = [None] * len(items)
    parts = await _parts(connection, items, packages, outcomes)
    company_ids = [part.company_id for part in parts]
    charged = {package_id for part in parts for package_id in part.package_of.values() if package_id is not None}
    reserve = sum(len(part.positions) for part in parts)
    if unlocked:
        read = await read_group(connection, company_ids, charged, reserve=reserve) if len(charged) == 1 else None
        if read is None or any(pool.closed or pool.spend_caps for pool in read.packages.values()):
            raise TakeTheLock
        lock = read
    else:
        lock = await lock_group(connection, company_ids, charged, reserve=reserve)
    locked, reserved = lock.packages, lock.ids
    _check_packages(parts, locked, charged, packages)
    codes = {items[i].request.deduction_code for part in parts for i in part.positions}
    price_entries = await prices.entries(connection, lock.price_version, company_ids, codes) if parts else []
    caught_up = {package_id: operations.catch_up(pool.state, at) for package_id, pool in locked.items()}
    states = {package_id: change.state for package_id, change in caught_up.items()}
    stored = await _stored(connection, items, parts) if unit.codes_taken else {}
    caps = await _caps_of(connection, parts, states, locked)
    decisions = [_decide_part(items, part, states, stored, price_entries, at, outcomes, caps) for part in parts]
    if unlocked and not all(isinstance(outcome, deduction.Applied) for outcome in outcomes):
        raise TakeTheLock  # a refusal or a repeat is answered under the lock, with the codes looked up
    if not unit.codes_taken:
        await _check_refused_are_new(connection, parts, decisions)
    applied = [one for decision in decisions for one in decision.applied]
    ids = {key_of(one): row_id for one, row_id in zip(applied, reserved, strict=False)}
    changes = [
        pool_changes_of(locked[package_id], caught_up[package_id], decision, ids, at)
        for decision in decisions
        for package_id in _written_packages(decision, locked, caught_up)
    ]
    if unlocked:
        (change,) = changes  # one package charged, every item applied
        if not fits_one_statement(change):
            raise TakeTheLock
        one = await write_if_unmoved(connection, change, at=at)
        if one is None:
            raise TakeTheLock(moved=True)
        written = [one]
    else:
        written = await write(connection, changes, at=at) if changes else []
    for part, decision in zip(parts, decisions, strict=True):
        await _remember_cap_events(connection, part.company_id, decision)
    changed = frozenset(change.after.company_id for change in changes)
    return GroupApplied(_answered(outcomes), ids, changed, written)


async def _parts(
    connection: AsyncConnection,
    items: Sequence[Prepared],
    packages: WabaPackages,
    outcomes: list[_Outcome | BatchItemResult | None],
) -> list[_Part]:
    """The group split by company, in (company id) order; an unknown company's items are refused here."""
    positions: dict[int, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        positions[item.request.company_id].append(index)
    wanted = {company_id: {items[i].request.waba_id for i in mine} for company_id, mine in positions.items()}
    package_of = await packages.packages(connection, wanted)
    unsure = [company_id for company_id in positions if not package_of[company_id]]
    known = await company_store.known_companies(connection, unsure) if unsure else set()
    parts = []
    for company_id in sorted(positions):
        mine = positions[company_id]
        if not package_of[company_id] and company_id not in known:
            error = BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
            for index in mine:
                outcomes[index] = BatchItemResult(items[index].request.unique_code, "rejected", error=error)
            continue
        parts.append(_Part(company_id, mine, package_of[company_id]))
    return parts


def _check_packages(
    parts: Sequence[_Part], locked: dict[int, pool_store.LockedPool], charged: set[int], packages: WabaPackages
) -> None:
    """Every package the group charges was found open under its lock; else forget the companies and retry."""
    if len(locked) == len(charged) and not any(pool.closed for pool in locked.values()):
        return
    for part in parts:
        ids = {package_id for package_id in part.package_of.values() if package_id is not None}
        if any(package_id not in locked or locked[package_id].closed for package_id in ids):
            packages.forget(part.company_id)
    raise unit_of_work.PackageMovedMeanwhile


async def _stored(connection: AsyncConnection, items: Sequence[Prepared], parts: Sequence[_Part]) -> dict[Key, Record]:
    """The group's codes already applied, by (company, code)."""
    codes = {part.company_id: {items[i].request.unique_code for i in part.positions} for part in parts}
    return await request_store.find_deductions_of(connection, codes)


def _decide_part(
    items: Sequence[Prepared],
    part: _Part,
    states: dict[int, operations.PoolState],
    stored: dict[Key, Record],
    prices: Sequence[PriceEntry],
    at: datetime,
    outcomes: list[_Outcome | BatchItemResult | None],
    caps: Mapping[tuple[int, str], CapState],
) -> deduction.Decision[Prepared]:
    """One company's items decided against its own packages (and its WABAs' caps), as a group of it alone."""
    company_id = part.company_id
    mine = [items[i] for i in part.positions]
    own = {package_id: states[package_id] for package_id in part.package_of.values() if package_id in states}
    stored_codes = {code: row for (company, code), row in stored.items() if company == company_id}
    book = PriceBook([p for p in prices if p.company_id in (None, company_id)], company_id=company_id, at=at)
    own_caps = {waba: cap for (company, waba), cap in caps.items() if company == company_id}
    decision = deduction.decide(mine, own, stored_codes, part.package_of, book, caps=own_caps)
    for index, outcome in zip(part.positions, decision.outcomes, strict=True):
        outcomes[index] = outcome
    return decision


async def _check_refused_are_new(
    connection: AsyncConnection, parts: Sequence[_Part], decisions: Sequence[deduction.Decision[Prepared]]
) -> None:
    """A replay must not be answered with a refusal decided as if it were new: retry with the codes looked up."""
    refused = {
        part.company_id: codes
        for part, decision in zip(parts, decisions, strict=True)
        if (codes := {o.unique_code for o in decision.outcomes if isinstance(o, deduction.Refused)})
    }
    if refused and await request_store.find_deductions_of(connection, refused):
        raise unit_of_work.CodeTakenMeanwhile


def _written_packages(
    decision: deduction.Decision[Prepared],
    locked: dict[int, pool_store.LockedPool],
    caught_up: dict[int, operations.Change],
) -> list[int]:
    """The company's packages the group changes: charged, caught up to a new cycle, or otherwise moved."""
    charging = {one.package_id for one in decision.applied}
    return [
        package_id
        for package_id, state in decision.states.items()
        if package_id in charging
        or caught_up[package_id].moves
        or state != locked[package_id].state
        or decision.events.get(package_id)  # a cap's first refusal raises an event and charges nothing
    ]


async def _caps_of(
    connection: AsyncConnection,
    parts: Sequence[_Part],
    states: Mapping[int, operations.PoolState],
    locked: Mapping[int, pool_store.LockedPool],
) -> dict[tuple[int, str], CapState]:
    """The spending caps of the group's WABAs, in one read under the packages' locks, in their packages' cycles;
    none read for WABAs whose packages are not flagged as capped (`LockedPool.spend_caps`)."""
    cycle_of = {
        (part.company_id, waba_id): states[package_id].cycle_start
        for part in parts
        for waba_id, package_id in part.package_of.items()
        if package_id is not None and package_id in states and locked[package_id].spend_caps
    }
    return await cap_store.caps_in_cycles(connection, cycle_of)


async def _remember_cap_events(
    connection: AsyncConnection, company_id: int, decided: deduction.Decision[Prepared]
) -> None:
    """The caps whose warning or reach the group raised keep it for the cycle (at most twice a cycle each)."""
    flags = []
    for package_id, run in decided.caps.items():
        cycle_start = decided.states[package_id].cycle_start
        for state in run.raised():
            warned = cycle_start if state.warned else None
            flags.append(cap_store.CapFlags(state.waba_id, warned, cycle_start if state.reached else None))
    await cap_store.save_flags(connection, company_id, flags)


def _answered(outcomes: Sequence[_Outcome | BatchItemResult | None]) -> list[_Outcome | BatchItemResult]:
    answered = []
    for index, outcome in enumerate(outcomes):
        if outcome is None:
            raise RuntimeError(f"item {index} of a group was left without an outcome")
        answered.append(outcome)
    return answered
