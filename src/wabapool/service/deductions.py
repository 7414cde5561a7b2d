"""Group apply: many deductions of one company in one transaction, each with its own outcome.

Each package the group charges (the pool, or v2 WABAs' own) is locked once
per group; every item is decided in memory by
the pure decision step (`decide`, no I/O); what it decided is written by the
one storage contract (`storage.changes.write_changes`). A rejected item takes
nothing and never fails its neighbours.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain import operations
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.events import DomainEvent
from wabapool.domain.pricing import PriceBook, PriceEntry
from wabapool.pii import PiiSealer
from wabapool.service.models import Allocation, BatchItemResult, DeductionRequest, DeductionResult
from wabapool.service.pool_changes import cycle_entries
from wabapool.storage import companies as company_store
from wabapool.storage import ledger as ledger_store
from wabapool.storage import pools as pool_store
from wabapool.storage import requests as request_store
from wabapool.storage.changes import PoolChanges, SpendDelta, UsageDelta, reserve_deduction_ids, write_changes
from wabapool.storage.usage import local_day
from wabapool.storage.versions import Written


class Prepared(NamedTuple):
    """A checked deduction with everything that does not depend on the pool.

    Computed when the deduction arrives, outside the group's transaction, so
    the pool stays locked only for the money arithmetic and the writes.
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


@dataclass(slots=True)
class _Applied:
    """A deduction the group took; its result is built once the database has given it an id."""

    item: Prepared
    package_id: int
    unit_price_minor: int
    market: str | None
    amount: int
    value_before: int
    value_after: int
    charged: operations.Charged

    def result(self, deduction_id: int, *, replayed: bool = False) -> DeductionResult:
        portions = self.charged.portions
        return DeductionResult(
            deduction_id,
            self.item.request.unique_code,
            self.amount,
            self.value_before,
            self.value_after,
            portions[0].credited_to if portions else None,
            tuple([Allocation.of(p) for p in portions]),
            replayed,
        )


@dataclass(frozen=True, slots=True)
class _RepeatInGroup:
    """A code repeated inside the group with the same payload: the first one's result, replayed."""

    first: _Applied


# What a group decides for one item: final, or waiting for the id of a row written by this group.
_Outcome = BatchItemResult | _Applied | _RepeatInGroup


@dataclass(slots=True)
class Decided:
    """What the decision step made of a group: an outcome per item in order, and what each package takes."""

    outcomes: list[_Outcome]
    states: dict[int, operations.PoolState]
    applied: list[_Applied] = field(default_factory=list)
    events: dict[int, list[DomainEvent]] = field(default_factory=lambda: defaultdict(list))


class WabaPackages:
    """The package each WABA charges, remembered per process.

    Only a package is kept, never "no such WABA" (it may be provisioned since,
    by any process). A WABA changes package only when its package is closed
    (the backfill, or its rollback closing the pool), and a group that finds a
    package closed under its lock forgets the company and asks again
    (`PackageMovedMeanwhile`), so a remembered package is never charged stale.
    """

    def __init__(self, *, max_companies: int = 10_000) -> None:
        self._known: OrderedDict[int, dict[str, int]] = OrderedDict()
        self._max_companies = max_companies

    async def packages(self, connection: AsyncConnection, company_id: int, waba_ids: set[str]) -> dict[str, int | None]:
        """Each known WABA's package (None: it has none); WABAs of no such id in the company are left out."""
        known = self._known.get(company_id)
        if known is not None:
            self._known.move_to_end(company_id)
            if waba_ids <= known.keys():
                return {waba_id: known[waba_id] for waba_id in waba_ids}
        found = await company_store.waba_packages(connection, company_id, waba_ids - (known or {}).keys())
        with_package = {waba_id: package_id for waba_id, package_id in found.items() if package_id is not None}
        if with_package:
            known = self._known.setdefault(company_id, {})
            known.update(with_package)
            while len(self._known) > self._max_companies:
                self._known.popitem(last=False)
        remembered = {waba_id: package_id for waba_id, package_id in (known or {}).items() if waba_id in waba_ids}
        return {**found, **remembered}

    def forget(self, company_id: int) -> None:
        self._known.pop(company_id, None)


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


def _reject_all(items: Sequence[Prepared], error: BillingError) -> list[_Outcome]:
    return [BatchItemResult(i.request.unique_code, "rejected", error=error) for i in items]


class GroupApplied(NamedTuple):
    """What a group's transaction decided and wrote; the answers are built after commit, outside the lock."""

    outcomes: list[_Outcome]
    ids: dict[str, int]
    changed: bool
    written: Sequence[Written] = ()  # what the packages became, for the balance cache

    def results(self) -> list[BatchItemResult]:
        """Every outcome final, with the ids the database gave the rows this group wrote."""
        results = []
        for outcome in self.outcomes:
            if isinstance(outcome, _Applied):
                code = outcome.item.request.unique_code
                outcome = BatchItemResult(code, "applied", result=outcome.result(self.ids[code]))
            elif isinstance(outcome, _RepeatInGroup):
                code = outcome.first.item.request.unique_code
                outcome = BatchItemResult(code, "replayed", result=outcome.first.result(self.ids[code], replayed=True))
            results.append(outcome)
        return results


class CodeAppliedMeanwhile(Exception):
    """A unique_code thought new was in the table: roll back and decide again, looking the codes up."""


class PackageMovedMeanwhile(Exception):
    """A package the group locked was closed (moved by the backfill): roll back and find the WABAs' packages again."""


async def apply_group(
    connection: AsyncConnection,
    company_id: int,
    items: Sequence[Prepared],
    *,
    at: datetime,
    service_name: str | None,
    packages: WabaPackages,
    look_up_existing: bool,
) -> GroupApplied:
    """Apply valid deductions of one company: the outcomes in order, the new rows' ids, whether anything changed.

    Each deduction charges the package of its WABA: the company's pool, or the
    WABA's own (v2). The group locks every package it charges in one
    statement, in id order, so groups and the backfill never deadlock.

    Without `look_up_existing` the codes are taken to be new (the common case,
    one query fewer); if the insert finds one taken (UniqueConflict from
    storage), or a rejected one exists, the caller rolls back and retries with
    the look-up. Everything that does not need the packages (WABAs, prices,
    row ids) is fetched before their locks are taken.
    """
    package_of = await packages.packages(connection, company_id, {i.request.waba_id for i in items})
    if not package_of and await company_store.get_company(connection, company_id) is None:
        return GroupApplied(_reject_all(items, BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")), {}, False)
    prices = await company_store.prices_for(connection, company_id, {i.request.deduction_code for i in items})
    reserved = await reserve_deduction_ids(connection, len(items))
    charged = {package_id for package_id in package_of.values() if package_id is not None}
    locked = await pool_store.load_packages(connection, charged, for_update=True)
    if any(pool.closed for pool in locked.values()) or len(locked) != len(charged):
        packages.forget(company_id)
        raise PackageMovedMeanwhile
    caught_up = {package_id: operations.catch_up(pool.state, at) for package_id, pool in locked.items()}
    existing = (
        await request_store.find_deductions(connection, company_id, {i.request.unique_code for i in items})
        if look_up_existing
        else {}
    )
    states = {package_id: change.state for package_id, change in caught_up.items()}
    decided = decide(items, states, existing, package_of, PriceBook(prices, company_id=company_id, at=at))
    if not look_up_existing:
        # A replay must not be answered with a rejection decided as if it were new.
        rejected = {
            o.unique_code for o in decided.outcomes if isinstance(o, BatchItemResult) and o.status == "rejected"
        }
        if rejected and await request_store.find_deductions(connection, company_id, rejected):
            raise CodeAppliedMeanwhile
    ids = {a.item.request.unique_code: row_id for a, row_id in zip(decided.applied, reserved, strict=False)}
    charging = {a.package_id for a in decided.applied}
    changes = [
        _changes(pool, caught_up[package_id], decided, ids, at, service_name)
        for package_id, pool in locked.items()
        if package_id in charging or caught_up[package_id].moves or decided.states[package_id] != pool.state
    ]
    written = await write_changes(connection, changes, at=at) if changes else []
    return GroupApplied(decided.outcomes, ids, bool(changes), written)


def decide(
    items: Sequence[Prepared],
    states: dict[int, operations.PoolState],
    existing: dict[str, Any],
    package_of: dict[str, int | None],
    book: PriceBook,
) -> Decided:
    """Decide every item in order against the in-memory packages; no I/O.

    Items that reach a package are charged in runs (`deduct_many`), one run per
    package; the runs end early only where a code repeats one still waiting,
    so the repeat sees whether the first was taken.
    """
    outcomes: list[_Outcome | None] = [None] * len(items)
    decided = Decided([], dict(states))
    in_group: dict[str, _Applied] = {}
    waiting: dict[int, list[tuple[int, Prepared, PriceEntry, str | None, int]]] = defaultdict(list)
    waiting_codes: set[str] = set()

    def charge_waiting() -> None:
        for package_id, run_items in waiting.items():
            state = decided.states[package_id]
            run = operations.deduct_many(state, [amount for *_, amount in run_items], at=book.at)
            total = state.buckets.total
            for (index, item, price, market, amount), outcome in zip(run_items, run.outcomes, strict=True):
                if isinstance(outcome, BillingError):
                    outcomes[index] = BatchItemResult(item.request.unique_code, "rejected", error=outcome)
                    continue
                before = total
                if outcome.moves:
                    total = outcome.moves[-1].total_after_minor
                applied = _Applied(item, package_id, price.unit_price_minor, market, amount, before, total, outcome)
                outcomes[index] = applied
                in_group[item.request.unique_code] = applied
                decided.applied.append(applied)
            decided.events[package_id].extend(run.events)
            decided.states[package_id] = run.state
        waiting.clear()
        waiting_codes.clear()

    for index, item in enumerate(items):
        request = item.request
        code = request.unique_code
        if code in waiting_codes:
            charge_waiting()
        earlier = existing.get(code) or in_group.get(code)
        if earlier is not None:
            outcomes[index] = _repeat(item, earlier)
            continue
        if request.waba_id not in package_of:
            error = BillingError(Rejection.UNKNOWN_WABA, "no such WABA in this company", {"waba_id": request.waba_id})
            outcomes[index] = BatchItemResult(code, "rejected", error=error)
            continue
        package_id = package_of[request.waba_id]
        if package_id is None:
            error = BillingError(
                Rejection.NOT_SHARED_POOL,
                "this WABA has no package to charge: provision the company's pool or the WABA's package",
                {"waba_id": request.waba_id},
            )
            outcomes[index] = BatchItemResult(code, "rejected", error=error)
            continue
        price, market = book.price(request.deduction_code, request.phone_number)
        if price is None:
            error = BillingError(
                Rejection.UNKNOWN_DEDUCTION_CODE,
                "no price for this deduction_code",
                {"deduction_code": request.deduction_code},
            )
            outcomes[index] = BatchItemResult(code, "rejected", error=error)
            continue
        waiting[package_id].append((index, item, price, market, request.quantity * price.unit_price_minor))
        waiting_codes.add(code)
    if waiting:
        charge_waiting()
    for index, outcome in enumerate(outcomes):
        if outcome is None:
            raise RuntimeError(f"item {index} of a group was left without an outcome")
        decided.outcomes.append(outcome)
    return decided


def _repeat(item: Prepared, earlier: Any) -> _Outcome:
    """A repeated unique_code: the original result if the payload matches, else a conflict."""
    code = item.request.unique_code
    first_hash = earlier.item.payload_hash if isinstance(earlier, _Applied) else earlier.payload_hash
    if first_hash != item.payload_hash:
        error = BillingError(
            Rejection.IDEMPOTENCY_CONFLICT,
            "unique_code was already used with a different payload",
            {"unique_code": code},
        )
        return BatchItemResult(code, "rejected", error=error)
    if isinstance(earlier, _Applied):
        return _RepeatInGroup(earlier)
    return BatchItemResult(code, "replayed", result=_replay(earlier))


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
    decided: Decided,
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
