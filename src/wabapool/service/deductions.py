"""Group apply: many deductions of one pool in one transaction, each with its own outcome.

The pool rows are locked once per group; every bucket change is computed in
memory by the pure domain rules; the requests and their ledger entries are
written with one multi-row insert each (COPY on PostgreSQL for large groups).
A rejected item takes nothing and never fails its neighbours.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain import operations
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.events import DomainEvent
from wabapool.domain.pool import Move
from wabapool.domain.pricing import PriceBook, PriceEntry
from wabapool.pii import PiiSealer
from wabapool.service.models import Allocation, BatchItemResult, DeductionRequest, DeductionResult
from wabapool.storage import bulk
from wabapool.storage import companies as company_store
from wabapool.storage import ledger as ledger_store
from wabapool.storage import pools as pool_store
from wabapool.storage import requests as request_store

# Below this many rows a plain INSERT is as quick as COPY and its extra round trip for ids.
BULK_MIN_ROWS = 16


@dataclass(slots=True)
class _Applied:
    request: DeductionRequest
    payload_hash: str
    unit_price_minor: int
    market: str | None
    result: DeductionResult
    moves: list[Move]


@dataclass(slots=True)
class _Group:
    """What one transaction accumulates before it writes."""

    applied: list[_Applied] = field(default_factory=list)
    events: list[DomainEvent] = field(default_factory=list)
    spend_by_waba: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class WabaMembership:
    """WABAs known to be in a company's pool, remembered per process.

    Only a yes is kept: a WABA never leaves its company's pool once it joined,
    so a remembered yes stays true, while a no is asked of the database again
    (the WABA may have been provisioned since, by any process).
    """

    def __init__(self, *, max_companies: int = 10_000) -> None:
        self._known: OrderedDict[int, set[str]] = OrderedDict()
        self._max_companies = max_companies

    async def in_pool(self, connection: AsyncConnection, company_id: int, waba_ids: set[str]) -> set[str]:
        known = self._known.get(company_id)
        if known is not None:
            self._known.move_to_end(company_id)
            if waba_ids <= known:
                return waba_ids
        found = await company_store.wabas_in_pool(connection, company_id, waba_ids - (known or set()))
        if found:
            known = self._known.setdefault(company_id, set())
            known |= found
            while len(self._known) > self._max_companies:
                self._known.popitem(last=False)
        return waba_ids & (known or set())


class AlreadyApplied(Exception):
    """A code thought new was in the table: roll back and decide again, looking the codes up."""


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


async def missing_pool(connection: AsyncConnection, company_id: int) -> BillingError:
    """Why a company has no pool to charge: it does not exist, or it is not on the shared pool (v2)."""
    if await company_store.get_company(connection, company_id) is None:
        return BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
    return BillingError(Rejection.NOT_SHARED_POOL, "the company has no shared balance pool")


def _reject_all(requests: Sequence[DeductionRequest], error: BillingError) -> list[BatchItemResult]:
    return [BatchItemResult(r.unique_code, "rejected", error=error) for r in requests]


async def apply_group(
    connection: AsyncConnection,
    company_id: int,
    requests: Sequence[DeductionRequest],
    *,
    at: datetime,
    service_name: str | None,
    sealer: PiiSealer,
    memberships: WabaMembership,
    look_up_existing: bool,
) -> tuple[list[BatchItemResult], bool]:
    """Apply valid deductions of one company; returns results in order and whether anything changed.

    Without `look_up_existing` the codes are taken to be new (the common case,
    one query fewer); if the insert finds one taken, or a rejected one exists,
    AlreadyApplied is raised before anything else is written and the caller
    retries with the look-up.
    """
    known_wabas = await memberships.in_pool(connection, company_id, {r.waba_id for r in requests})
    prices = await company_store.prices_for(connection, company_id, {r.deduction_code for r in requests})
    pool = await pool_store.load_pool(connection, company_id, for_update=True)
    if pool is None:
        return _reject_all(requests, await missing_pool(connection, company_id)), False
    cycle_change = operations.catch_up(pool.state, at)
    existing = (
        await request_store.find_deductions(connection, company_id, {r.unique_code for r in requests})
        if look_up_existing
        else {}
    )
    group = _Group(events=list(cycle_change.events))
    results, state = _decide(requests, cycle_change.state, existing, known_wabas, prices, at, group)
    if not look_up_existing:
        # A replay must not be answered with a rejection decided as if it were new.
        rejected = {r.unique_code for r in results if r.status == "rejected"}
        if rejected and await request_store.find_deductions(connection, company_id, rejected):
            raise AlreadyApplied
    changed = bool(group.applied) or bool(cycle_change.moves) or cycle_change.state != pool.state
    if changed:
        ids = await _write(
            connection,
            pool,
            state,
            cycle_change.moves,
            group,
            at=at,
            service_name=service_name,
            sealer=sealer,
            look_up_existing=look_up_existing,
        )
        results = _with_ids(results, ids)
    return results, changed


def _decide(
    requests: Sequence[DeductionRequest],
    state: operations.PoolState,
    existing: dict[str, Any],
    known_wabas: set[str],
    prices: list[PriceEntry],
    at: datetime,
    group: _Group,
) -> tuple[list[BatchItemResult], operations.PoolState]:
    """Decide every item in order against the in-memory pool; no I/O."""
    book = PriceBook(prices, company_id=state.company_id, at=at)
    in_group: dict[str, _Applied] = {}
    results: list[BatchItemResult] = []
    for request in requests:
        payload_hash = request.payload_hash()
        earlier = existing.get(request.unique_code) or in_group.get(request.unique_code)
        if earlier is not None:
            results.append(_repeat(request, payload_hash, earlier))
            continue
        try:
            applied, change = _apply_one(request, payload_hash, state, known_wabas, book)
        except BillingError as error:
            results.append(BatchItemResult(request.unique_code, "rejected", error=error))
            continue
        state = change.state
        in_group[request.unique_code] = applied
        group.applied.append(applied)
        group.events.extend(change.events)
        group.spend_by_waba[request.waba_id] += applied.result.amount
        results.append(BatchItemResult(request.unique_code, "applied", result=applied.result))
    return results, state


def _repeat(request: DeductionRequest, payload_hash: str, earlier: Any) -> BatchItemResult:
    """A repeated unique_code: the original result if the payload matches, else a conflict."""
    if earlier.payload_hash != payload_hash:
        error = BillingError(
            Rejection.IDEMPOTENCY_CONFLICT,
            "unique_code was already used with a different payload",
            {"unique_code": request.unique_code},
        )
        return BatchItemResult(request.unique_code, "rejected", error=error)
    if isinstance(earlier, _Applied):
        # Resolved to the stored id in _with_ids once the group is written.
        return BatchItemResult(request.unique_code, "replayed", result=replace(earlier.result, replayed=True))
    return BatchItemResult(request.unique_code, "replayed", result=_replay(earlier))


def _apply_one(
    request: DeductionRequest,
    payload_hash: str,
    state: operations.PoolState,
    known_wabas: set[str],
    prices: PriceBook,
) -> tuple[_Applied, operations.Change]:
    if request.waba_id not in known_wabas:
        raise BillingError(Rejection.UNKNOWN_WABA, "no such WABA in this company", {"waba_id": request.waba_id})
    price, market = prices.price(request.deduction_code, request.phone_number)
    if price is None:
        raise BillingError(
            Rejection.UNKNOWN_DEDUCTION_CODE,
            "no price for this deduction_code",
            {"deduction_code": request.deduction_code},
        )
    amount = request.quantity * price.unit_price_minor
    change = operations.deduct(state, amount)
    result = DeductionResult(
        deduction_id=0,
        unique_code=request.unique_code,
        amount=amount,
        value_before=state.buckets.total,
        value_after=change.state.buckets.total,
        credited_to=change.portions[0].credited_to if change.portions else None,
        allocations=tuple(Allocation.of(p) for p in change.portions),
    )
    return _Applied(request, payload_hash, price.unit_price_minor, market, result, change.moves), change


def _request_row(
    applied: _Applied,
    pool: pool_store.LockedPool,
    state: operations.PoolState,
    *,
    at: datetime,
    service_name: str | None,
    sealer: PiiSealer,
) -> dict[str, Any]:
    request, result = applied.request, applied.result
    return {
        "company_id": request.company_id,
        "unique_code": request.unique_code,
        "organization_package_id": pool.package_id,
        "waba_id": request.waba_id,
        "billing_code": request.billing_code,
        "deduction_code": request.deduction_code,
        "quantity": request.quantity,
        "unit_price_minor": applied.unit_price_minor,
        "amount_minor": result.amount,
        "market": applied.market,
        "value_before_minor": result.value_before,
        "value_after_minor": result.value_after,
        "credited_to": result.credited_to,
        "allocations": [
            {"credited_to": a.credited_to, "quota_type": a.quota_type, "amount": a.amount} for a in result.allocations
        ],
        "payload_hash": applied.payload_hash,
        "cycle_start": state.cycle_start,
        "service_name": service_name,
        "broadcast_id": request.broadcast_id,
        "message_id": request.message_id,
        "category": request.category,
        "customer_name_enc": sealer.seal(request.customer_name),
        "phone_number_enc": sealer.seal(request.phone_number),
        "phone_number_hash": sealer.search_hash(request.phone_number),
        "created_at": at,
    }


async def _write(
    connection: AsyncConnection,
    pool: pool_store.LockedPool,
    state: operations.PoolState,
    cycle_moves: list[Move],
    group: _Group,
    *,
    at: datetime,
    service_name: str | None,
    sealer: PiiSealer,
    look_up_existing: bool,
) -> dict[str, int]:
    """Everything the group decided, in as few statements as the databases allow; returns the new ids."""
    company_id = state.company_id
    rows = [_request_row(a, pool, state, at=at, service_name=service_name, sealer=sealer) for a in group.applied]
    ids = await _insert_requests(connection, rows, look_up_existing=look_up_existing)
    entries = ledger_store.entry_rows(
        company_id=company_id,
        package_id=pool.package_id,
        moves=cycle_moves,
        context=ledger_store.EntryContext(reference=f"cycle:{state.cycle_label}", cycle_start=state.cycle_start),
        at=at,
    )
    for applied in group.applied:
        deduction_id = ids[applied.request.unique_code]
        context = ledger_store.EntryContext(
            reference=applied.request.unique_code,
            cycle_start=state.cycle_start,
            waba_id=applied.request.waba_id,
            deduction_request_id=deduction_id,
        )
        entries += ledger_store.entry_rows(
            company_id=company_id, package_id=pool.package_id, moves=applied.moves, context=context, at=at
        )
    if bulk.supported(connection) and len(entries) >= BULK_MIN_ROWS:
        await bulk.copy_ledger_entries(connection, entries)
    else:
        await ledger_store.append_entries(connection, entries)
    await pool_store.save_pool(connection, pool, state, at=at)
    await ledger_store.add_waba_spend(
        connection, company_id=company_id, cycle_start=state.cycle_start, spend_by_waba=group.spend_by_waba
    )
    await ledger_store.emit_events(connection, company_id=company_id, events=group.events, at=at)
    return ids


async def _insert_requests(
    connection: AsyncConnection, rows: list[dict[str, Any]], *, look_up_existing: bool
) -> dict[str, int]:
    """The request rows in, or AlreadyApplied if a code thought new was taken."""
    if bulk.supported(connection) and len(rows) >= BULK_MIN_ROWS and not look_up_existing:
        try:
            return await bulk.copy_deductions(connection, rows)
        except bulk.CodeTaken as exc:
            raise AlreadyApplied from exc
    ids = await request_store.insert_deductions(connection, rows)
    if len(ids) != len(rows):
        if look_up_existing:
            # The pool lock serialises a company's deductions and the codes were looked up under it.
            raise RuntimeError("a unique_code was applied concurrently despite the pool lock")
        raise AlreadyApplied
    return ids


def _with_ids(results: list[BatchItemResult], ids: dict[str, int]) -> list[BatchItemResult]:
    """Fill in the deduction ids the database assigned, for applied items and in-group replays."""
    filled = []
    for outcome in results:
        result = outcome.result
        if result is not None and result.deduction_id == 0:
            result = DeductionResult(
                ids[outcome.unique_code],
                result.unique_code,
                result.amount,
                result.value_before,
                result.value_after,
                result.credited_to,
                result.allocations,
                result.replayed,
            )
            outcome = BatchItemResult(outcome.unique_code, outcome.status, result)
        filled.append(outcome)
    return filled
