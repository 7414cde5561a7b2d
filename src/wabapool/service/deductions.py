"""A group of one company's deductions, applied in one unit of work, each with its own outcome.

The use case between the queue (`group_commit`, step 1) and the pure decision
(`domain.deduction.decide`, step 3): in a transaction opened by the unit of
work (`unit_of_work.run`, step 2) it locks every package the group charges
once, has the decision answer each item in memory, and hands what was decided
to the one write (`pool_changes.write`). A rejected item takes nothing and
never fails its neighbours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from wabapool.domain import deduction, operations
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.pricing import PriceBook
from wabapool.pii import PiiSealer
from wabapool.service import unit_of_work
from wabapool.service.context import ServiceContext
from wabapool.service.models import Allocation, BatchItemResult, DeductionRequest, DeductionResult
from wabapool.service.pool_changes import cycle_entries, write
from wabapool.service.waba_packages import WabaPackages
from wabapool.storage import companies as company_store
from wabapool.storage import ledger as ledger_store
from wabapool.storage import pools as pool_store
from wabapool.storage import requests as request_store
from wabapool.storage.changes import PoolChanges, SpendDelta, UsageDelta, reserve_deduction_ids
from wabapool.storage.usage import local_day
from wabapool.storage.versions import Written


class Prepared(NamedTuple):
    """A checked deduction with everything that does not depend on the pool.

    Computed when the deduction arrives, outside the group's transaction, so
    the pool stays locked only for the money arithmetic and the writes. It is
    what the decision reads of a request (`domain.deduction.Asked`).
    """

    request: DeductionRequest
    payload_hash: str
    customer_name_enc: bytes | None
    phone_number_enc: bytes | None
    phone_number_hash: str | None

    @classmethod
    def of(cls, request: DeductionRequest, sealer: PiiSealer) -> Prepared:
        return cls(
            request,
            sealer.payload_hash(request.payload_bytes()),
            sealer.seal(request.customer_name),
            sealer.seal(request.phone_number),
            sealer.search_hash(request.phone_number),
        )

    @property
    def unique_code(self) -> str:
        return self.request.unique_code

    @property
    def waba_id(self) -> str:
        return self.request.waba_id

    @property
    def deduction_code(self) -> str:
        return self.request.deduction_code

    @property
    def phone_number(self) -> str | None:
        return self.request.phone_number

    @property
    def quantity(self) -> int:
        return self.request.quantity


_Applied = deduction.Applied[Prepared]
_Outcome = deduction.Outcome[Prepared]


def _result(applied: _Applied, deduction_id: int, *, replayed: bool = False) -> DeductionResult:
    portions = applied.charged.portions
    return DeductionResult(
        deduction_id,
        applied.item.request.unique_code,
        applied.amount,
        applied.value_before,
        applied.value_after,
        portions[0].credited_to if portions else None,
        tuple([Allocation.of(p) for p in portions]),
        replayed,
    )


def _replay(row: Any) -> DeductionResult:
    allocations = tuple(Allocation(**item) for item in row.allocations)
    return DeductionResult(
        deduction_id=row.id,
        unique_code=row.unique_code,
        amount=row.amount_minor,
        value_before=row.value_before_minor,
        value_after=row.value_after_minor,
        credited_to=row.credited_to,
        allocations=allocations,
        replayed=True,
    )


class GroupApplied(NamedTuple):
    """What a group's transaction decided and wrote; the answers are built after commit, outside the lock."""

    outcomes: Sequence[_Outcome | BatchItemResult]
    ids: dict[str, int]
    changed: bool
    written: Sequence[Written] = ()  # what the packages became, for the balance cache

    def results(self) -> list[BatchItemResult]:
        """Every outcome final, with the ids the database gave the rows this group wrote."""
        return [_answer(outcome, self.ids) for outcome in self.outcomes]


def _answer(outcome: _Outcome | BatchItemResult, ids: dict[str, int]) -> BatchItemResult:
    """One item's answer: the decision's outcome with the id its row was given."""
    if isinstance(outcome, BatchItemResult):
        return outcome
    if isinstance(outcome, deduction.Applied):
        code = outcome.item.request.unique_code
        return BatchItemResult(code, "applied", result=_result(outcome, ids[code]))
    if isinstance(outcome, deduction.RepeatInGroup):
        code = outcome.first.item.request.unique_code
        return BatchItemResult(code, "replayed", result=_result(outcome.first, ids[code], replayed=True))
    if isinstance(outcome, deduction.Replay):
        row: Any = outcome.stored
        return BatchItemResult(row.unique_code, "replayed", result=_replay(row))
    return BatchItemResult(outcome.unique_code, "rejected", error=outcome.error)


class DeductionGroups:
    """Applies a group of one company's deductions in one unit of work; given to the queue as its `apply`."""

    def __init__(self, context: ServiceContext, packages: WabaPackages | None = None) -> None:
        self._context = context
        self._packages = packages or WabaPackages()

    async def apply(
        self, company_id: int, items: Sequence[Prepared], service_name: str | None
    ) -> list[BatchItemResult]:
        """One result per item, in order, once the group's transaction has committed."""
        at = self._context.clock()

        async def body(unit: unit_of_work.UnitOfWork) -> GroupApplied:
            applied = await apply_group(
                unit, company_id, items, at=at, service_name=service_name, packages=self._packages
            )
            if applied.changed:
                unit.after_commit(lambda: self._context.changed(company_id, applied.written))
            return applied

        applied = await unit_of_work.run(self._context.database, body)
        return applied.results()


async def apply_group(
    unit: unit_of_work.UnitOfWork,
    company_id: int,
    items: Sequence[Prepared],
    *,
    at: datetime,
    service_name: str | None,
    packages: WabaPackages,
) -> GroupApplied:
    """Apply valid deductions of one company: the outcomes in order, the new rows' ids, whether anything changed.

    Each deduction charges the package of its WABA: the company's pool, or the
    WABA's own (v2). The group locks every package it charges in one
    statement, in id order, so groups and the backfill never deadlock.

    Unless an earlier attempt found a code taken (`unit.codes_taken`), the
    codes are taken to be new (the common case, one query fewer); a taken one
    fails the insert (UniqueConflict) or shows among the rejected, and the unit
    of work tries again with the look-up. Everything that does not need the
    packages (WABAs, prices, row ids) is fetched before their locks are taken.
    """
    connection = unit.connection
    package_of = await packages.packages(connection, company_id, {i.request.waba_id for i in items})
    if not package_of and await company_store.get_company(connection, company_id) is None:
        error = BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
        return GroupApplied([BatchItemResult(i.request.unique_code, "rejected", error=error) for i in items], {}, False)
    prices = await company_store.prices_for(connection, company_id, {i.request.deduction_code for i in items})
    reserved = await reserve_deduction_ids(connection, len(items))
    charged = {package_id for package_id in package_of.values() if package_id is not None}
    locked = await pool_store.load_packages(connection, charged, for_update=True)
    if any(pool.closed for pool in locked.values()) or len(locked) != len(charged):
        packages.forget(company_id)
        raise unit_of_work.PackageMovedMeanwhile
    caught_up = {package_id: operations.catch_up(pool.state, at) for package_id, pool in locked.items()}
    codes = {i.request.unique_code for i in items}
    stored = await request_store.find_deductions(connection, company_id, codes) if unit.codes_taken else {}
    states = {package_id: change.state for package_id, change in caught_up.items()}
    decided = deduction.decide(items, states, stored, package_of, PriceBook(prices, company_id=company_id, at=at))
    if not unit.codes_taken:
        # A replay must not be answered with a rejection decided as if it were new.
        refused = {o.unique_code for o in decided.outcomes if isinstance(o, deduction.Refused)}
        if refused and await request_store.find_deductions(connection, company_id, refused):
            raise unit_of_work.CodeTakenMeanwhile
    ids = {a.item.request.unique_code: row_id for a, row_id in zip(decided.applied, reserved, strict=False)}
    charging = {a.package_id for a in decided.applied}
    changes = [
        _changes(pool, caught_up[package_id], decided, ids, at, service_name)
        for package_id, pool in locked.items()
        if package_id in charging or caught_up[package_id].moves or decided.states[package_id] != pool.state
    ]
    written = await write(connection, changes, at=at) if changes else []
    return GroupApplied(decided.outcomes, ids, bool(changes), written)


def _request_row(
    applied: _Applied, pool: pool_store.LockedPool, cycle_start: datetime, at: datetime, service_name: str | None
) -> request_store.DeductionRow:
    item = applied.item
    request = item.request
    portions = applied.charged.portions
    return request_store.DeductionRow(
        request.company_id,
        request.unique_code,
        pool.package_id,
        request.waba_id,
        request.billing_code,
        request.deduction_code,
        request.quantity,
        applied.unit_price_minor,
        applied.amount,
        applied.market,
        applied.value_before,
        applied.value_after,
        portions[0].credited_to if portions else None,
        item.payload_hash,
        cycle_start,
        service_name,
        request.broadcast_id,
        request.message_id,
        request.category,
        item.customer_name_enc,
        item.phone_number_enc,
        item.phone_number_hash,
        at,
        # The plain value, not the enum member: JSON encoders take a str three times faster than an Enum.
        [{"credited_to": p.credited_to, "quota_type": p.quota_type.value, "amount": p.amount_minor} for p in portions],
    )


def _changes(
    pool: pool_store.LockedPool,
    caught_up: operations.Change,
    decided: deduction.Decision[Prepared],
    ids: dict[str, int],
    at: datetime,
    service_name: str | None,
) -> PoolChanges:
    """One package's writes: its catch-up's entries, then each of its deductions' request row and entries."""
    state = decided.states[pool.package_id]
    applied = [a for a in decided.applied if a.package_id == pool.package_id]
    cycle_start = state.cycle_start
    day = local_day(at, state.timezone)  # the group's one day in the company's timezone (the usage roll-up)
    entries = cycle_entries(pool, caught_up, at=at)
    spend: dict[str, int] = defaultdict(int)
    for one in applied:
        request = one.item.request
        spend[request.waba_id] += one.amount
        context = ledger_store.EntryContext(
            reference=request.unique_code,
            cycle_start=cycle_start,
            waba_id=request.waba_id,
            deduction_request_id=ids[request.unique_code],
        )
        entries += ledger_store.entry_rows(
            company_id=state.company_id, package_id=pool.package_id, moves=one.charged.moves, context=context, at=at
        )
    return PoolChanges(
        pool=pool,
        after=state,
        entries=entries,
        deductions=[_request_row(a, pool, cycle_start, at, service_name) for a in applied],
        deduction_ids=[ids[a.item.request.unique_code] for a in applied],
        spend=[SpendDelta(waba_id, cycle_start, amount) for waba_id, amount in spend.items()],
        usage=[UsageDelta(a.item.request.waba_id, day, a.amount, a.item.request.quantity) for a in applied],
        events=[*caught_up.events, *decided.events.get(pool.package_id, [])],
    )
