"""The deduction logs (`mcc_logs`): deductions and refunds as rows of their own, newest first, keyset pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.json_types import JSONObject, JSONValue
from wabapool.pii import PiiSealer, normalize_phone
from wabapool.service.reports.companies import check_waba, company_of
from wabapool.storage import logs as log_store
from wabapool.storage.types import Record

LOG_PAGE_MAX = 200
REFUND_RANK = log_store.REFUND_RANK  # a row's `rank` on a refund (the CSV's Type column)


@dataclass(frozen=True, slots=True)
class LogFilter:
    """The reader's filters. A date is a day in the company timezone (`until` includes its day); a time is exact."""

    waba_id: str | None = None
    since: date | datetime | None = None
    until: date | datetime | None = None
    category: str | None = None
    broadcast_id: str | None = None
    phone_number: str | None = None


@dataclass(frozen=True, slots=True)
class LogRow:
    """One row of the logs: a deduction, or a refund (its own row, `deduction_id` the deduction it returns)."""

    kind: str  # deduction | refund
    deduction_id: int
    refund_id: int | None
    created_at: datetime
    unique_code: str
    waba_id: str
    waba_name: str | None
    broadcast_id: str | None
    message_id: str | None
    category: str | None
    deduction_code: str
    quantity: int
    unit_price: int
    amount: int  # negative for a refund: money back to the pool
    credited_to: str | None
    allocations: list[JSONObject]
    balance_after: int
    customer_name: str | None
    phone_number: str | None
    refunded: bool


@dataclass(frozen=True, slots=True)
class LogPage:
    rows: list[LogRow]
    next_cursor: str | None
    show_waba_id: bool
    currency: str


def _local_start(day: date, timezone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def _bounds(filters: LogFilter, timezone: str) -> tuple[datetime | None, datetime | None]:
    """`since` inclusive and `until` exclusive, in UTC; a date `until` covers its whole day."""
    since, until = filters.since, filters.until
    try:
        start = _local_start(since, timezone) if since is not None and not isinstance(since, datetime) else since
        if until is not None and not isinstance(until, datetime):
            end: datetime | None = _local_start(until + timedelta(days=1), timezone)
        else:
            end = until
    except OverflowError as exc:
        raise BillingError(Rejection.INVALID_REQUEST, "the period is out of range", {"field": "from"}) from exc
    if start is not None and end is not None and start > end:
        raise BillingError(Rejection.INVALID_REQUEST, "from is after to", {"field": "from"})
    return start, end


def log_position(position: list[JSONValue]) -> log_store.Position:
    """A decoded `mcc_logs` cursor as a keyset position; anything else is `invalid_request`."""
    try:
        created_at, rank, row_id = position
        if rank not in (log_store.DEDUCTION_RANK, log_store.REFUND_RANK):
            raise ValueError("unknown row kind")
        return datetime.fromisoformat(created_at), int(rank), int(row_id)
    except (ValueError, TypeError) as exc:
        raise BillingError(
            Rejection.INVALID_REQUEST, "cursor is not one this API returned", {"field": "cursor"}
        ) from exc


async def log_query(
    connection: AsyncConnection, sealer: PiiSealer, company_id: int, filters: LogFilter
) -> tuple[Record, log_store.LogQuery]:
    """The company (checked) and the storage query of the reader's filters."""
    company = await company_of(connection, company_id)
    await check_waba(connection, company_id, filters.waba_id)
    since, until = _bounds(filters, company.timezone)
    phone_hashes = None
    if filters.phone_number is not None:
        if normalize_phone(filters.phone_number) is None:
            raise BillingError(Rejection.INVALID_REQUEST, "phone_number holds no digits", {"field": "phone_number"})
        phone_hashes = tuple(sealer.search_hashes(filters.phone_number))
    query = log_store.LogQuery(
        waba_id=filters.waba_id,
        since=since,
        until=until,
        category=filters.category,
        broadcast_id=filters.broadcast_id,
        phone_number_hashes=phone_hashes,
    )
    return company, query


def _order_key(row: Record) -> tuple[datetime, int, int]:
    return (row.created_at, row.rank, row.row_id)


async def merged_page(
    connection: AsyncConnection,
    company_id: int,
    query: log_store.LogQuery,
    *,
    after: log_store.Position | None,
    limit: int,
) -> list[Record]:
    """Deductions and refunds in one order, newest first: each stream's next `limit`, merged, cut to `limit`."""
    deductions = await log_store.deduction_page(connection, company_id, query, after=after, limit=limit)
    refunded = await log_store.refund_page(connection, company_id, query, after=after, limit=limit)
    if not refunded:
        return deductions
    return sorted([*deductions, *refunded], key=_order_key, reverse=True)[:limit]


def log_row(sealer: PiiSealer, row: Record) -> LogRow:
    """A storage row (log_store.ROW_COLUMNS, by position) as a LogRow, its personal data opened."""
    (
        rank, _row_id, created_at, deduction_id, refund_id, unique_code, waba_id, waba_name, broadcast_id,
        message_id, category, deduction_code, quantity, unit_price, name_enc, phone_enc, amount, credited_to,
        allocations, balance_after, refunded,
    ) = row  # fmt: skip
    allocations = list(allocations) if allocations else []
    if credited_to is None and allocations:
        credited_to = allocations[0]["credited_to"]  # a refund: the bucket its first portion went back to
    return LogRow(
        "refund" if rank == log_store.REFUND_RANK else "deduction",
        deduction_id,
        refund_id,
        created_at,
        unique_code,
        waba_id,
        waba_name,
        broadcast_id,
        message_id,
        category,
        deduction_code,
        quantity,
        unit_price,
        amount,
        credited_to,
        allocations,
        balance_after,
        sealer.open(name_enc),
        sealer.open(phone_enc),
        bool(refunded),
    )
