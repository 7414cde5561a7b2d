"""One deduction as a group carries it, writes it and answers it: checked, as rows, as a result.

`Prepared` is the request with everything that does not need the pool
(hashes, sealed personal data), computed before the group's transaction;
`pool_changes_of` turns what the decision applied to one package into that
package's rows for the one write (`storage.changes`); `result_of` and
`replay_of` are the answers a caller gets.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import NamedTuple

from wabapool.domain import deduction, operations
from wabapool.pii import PiiSealer
from wabapool.service.models import Allocation, DeductionRequest, DeductionResult
from wabapool.service.pool_changes import cycle_entries
from wabapool.storage import ledger as ledger_store
from wabapool.storage import pools as pool_store
from wabapool.storage import requests as request_store
from wabapool.storage.changes import PoolChanges, SpendDelta, UsageDelta
from wabapool.storage.types import Record
from wabapool.storage.usage import local_day


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
    service_name: str | None = None  # the caller's service, stored with the row

    @classmethod
    def of(cls, request: DeductionRequest, sealer: PiiSealer, service_name: str | None = None) -> Prepared:
        return cls(
            request,
            sealer.payload_hash(request.payload_bytes()),
            sealer.seal(request.customer_name),
            sealer.seal(request.phone_number),
            sealer.search_hash(request.phone_number),
            service_name,
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

    @property
    def category(self) -> str | None:
        return self.request.category


Applied = deduction.Applied[Prepared]
Key = tuple[int, str]  # (company id, unique_code): a code is unique within its company


def result_of(applied: Applied, deduction_id: int, *, replayed: bool = False) -> DeductionResult:
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


def replay_of(row: Record) -> DeductionResult:
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


def key_of(applied: Applied) -> Key:
    request = applied.item.request
    return request.company_id, request.unique_code


def request_row(
    applied: Applied, pool: pool_store.LockedPool, cycle_start: datetime, at: datetime
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
        item.service_name,
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


def pool_changes_of(
    pool: pool_store.LockedPool,
    caught_up: operations.Change,
    decided: deduction.Decision[Prepared],
    ids: dict[Key, int],
    at: datetime,
) -> PoolChanges:
    """One package's writes: its catch-up's entries, then each of its deductions' request row and entries."""
    state = decided.states[pool.package_id]
    applied = [a for a in decided.applied if a.package_id == pool.package_id]
    cycle_start = state.cycle_start
    day = local_day(at, state.timezone)  # the group's one day in the company's timezone (the usage roll-up)
    entries = cycle_entries(pool, caught_up, at=at)
    spend: dict[str, int] = defaultdict(int)
    capped: dict[str, int] = defaultdict(int)
    for one in applied:
        request = one.item.request
        spend[request.waba_id] += one.amount
        capped[request.waba_id] += one.capped_minor
        context = ledger_store.EntryContext(
            reference=request.unique_code,
            cycle_start=cycle_start,
            waba_id=request.waba_id,
            deduction_request_id=ids[key_of(one)],
        )
        entries += ledger_store.entry_rows(
            company_id=state.company_id, package_id=pool.package_id, moves=one.charged.moves, context=context, at=at
        )
    return PoolChanges(
        pool=pool,
        after=state,
        entries=entries,
        deductions=[request_row(a, pool, cycle_start, at) for a in applied],
        deduction_ids=[ids[key_of(a)] for a in applied],
        spend=[SpendDelta(waba_id, cycle_start, amount, capped[waba_id]) for waba_id, amount in spend.items()],
        usage=[UsageDelta(a.item.request.waba_id, day, a.amount, a.item.request.quantity) for a in applied],
        events=[*caught_up.events, *decided.events.get(pool.package_id, [])],
    )
