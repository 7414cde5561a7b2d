"""What the company's people read: logs, the CSV export's rows, usage, billing events, preferences."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from wabapool.domain import cycle
from wabapool.domain.errors import BillingError, Rejection
from wabapool.pii import PiiSealer, normalize_phone
from wabapool.service.cursors import CursorSigner
from wabapool.service.errors import translates_storage_errors
from wabapool.storage import companies as company_store
from wabapool.storage import logs as log_store
from wabapool.storage import pools as pool_store
from wabapool.storage import usage as usage_store
from wabapool.storage.database import Database

LOG_PAGE_MAX = 200
EVENT_PAGE_MAX = 200
# Rows per read of the CSV export: a read costs two statements and a pool connection, so a few thousand rows
# make that negligible; a page held in memory is a few MB (and one more while the next is read ahead).
EXPORT_PAGE_ROWS = 5000
# A year and a bit: the page asks for a cycle; a longer period is a report, not a chart.
USAGE_DAYS_MAX = 400


def _as_day(value: date | datetime, timezone: str) -> date:
    """A date as it is; a time as its day in the company's timezone."""
    if isinstance(value, datetime):
        return usage_store.local_day(value, timezone)
    return value


def _event_position(position: list[Any]) -> tuple[datetime, int]:
    try:
        created_at, row_id = position
        return datetime.fromisoformat(created_at), int(row_id)
    except (ValueError, TypeError) as exc:
        raise BillingError(
            Rejection.INVALID_REQUEST, "cursor is not one this API returned", {"field": "cursor"}
        ) from exc


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
    allocations: list[dict[str, Any]]
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


@dataclass(frozen=True, slots=True)
class ExportPage:
    """A page of the CSV export: storage rows (`log_store.EXPORT_COLUMNS`, read by position) and, beside them,
    their personal data opened. Columns of plain values, not a LogRow each: the export formats a million rows."""

    rows: Sequence[Sequence[Any]]
    customer_names: list[str | None]
    phone_numbers: list[str | None]


@dataclass(frozen=True, slots=True)
class Export:
    """What a CSV download needs before its first byte: the company's settings and the row stream."""

    company_id: int
    show_waba_id: bool
    currency: str
    timezone: str
    pages: AsyncIterator[ExportPage]


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


def _log_position(position: list[Any]) -> log_store.Position:
    try:
        created_at, rank, row_id = position
        if rank not in (log_store.DEDUCTION_RANK, log_store.REFUND_RANK):
            raise ValueError("unknown row kind")
        return datetime.fromisoformat(created_at), int(rank), int(row_id)
    except (ValueError, TypeError) as exc:
        raise BillingError(
            Rejection.INVALID_REQUEST, "cursor is not one this API returned", {"field": "cursor"}
        ) from exc


# Reads ahead whose download was closed before they came back: held until they finish (the event loop keeps
# only a weak reference to a task). At most one per closed download, each one page's short read.
_READS_LEFT_BEHIND: set[asyncio.Task[Any]] = set()


def _let_finish(read: asyncio.Task[Any]) -> None:
    """Let a read ahead that nobody waits for finish, its outcome dropped.

    Cancelling it instead would interrupt the driver mid-statement, and the
    pool then resets the connection with a rollback that fails loudly.
    """
    _READS_LEFT_BEHIND.add(read)
    read.add_done_callback(_dropped)


def _dropped(read: asyncio.Task[Any]) -> None:
    _READS_LEFT_BEHIND.discard(read)
    if not read.cancelled():
        read.exception()  # retrieved, so a failed read nobody wanted is not reported as unhandled


REFUND_RANK = log_store.REFUND_RANK  # an export row's `rank` on a refund (the CSV's Type column)
_NAME_AT = log_store.EXPORT_COLUMNS.index("customer_name_enc")
_PHONE_AT = log_store.EXPORT_COLUMNS.index("phone_number_enc")


def _order_key(row: Any) -> tuple[datetime, int, int]:
    return (row.created_at, row.rank, row.row_id)


async def _merged_page(
    connection: Any,
    company_id: int,
    query: log_store.LogQuery,
    *,
    after: log_store.Position | None,
    limit: int,
) -> list[Any]:
    """Deductions and refunds in one order, newest first: each stream's next `limit`, merged, cut to `limit`."""
    deductions = await log_store.deduction_page(connection, company_id, query, after=after, limit=limit)
    refunded = await log_store.refund_page(connection, company_id, query, after=after, limit=limit)
    if not refunded:
        return deductions
    return sorted([*deductions, *refunded], key=_order_key, reverse=True)[:limit]


@dataclass(frozen=True, slots=True)
class WabaUsage:
    waba_id: str
    amount: int
    messages: int


@dataclass(frozen=True, slots=True)
class UsageDay:
    day: date
    amount: int
    messages: int
    by_waba: list[WabaUsage]


@dataclass(frozen=True, slots=True)
class UsageSeries:
    currency: str
    days: list[UsageDay]


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where an event's webhook delivery stands (derived from the outbox row, see `delivery_of`)."""

    state: str  # pending | delivered | failed | dead
    attempts: int
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class EventRow:
    id: str
    type: str
    created_at: datetime
    data: dict[str, Any]
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class EventPage:
    rows: list[EventRow]
    next_cursor: str | None


# Names another branch may give the dead-letter mark on outbox_events; whichever exists is read.
DEAD_LETTER_TIME_COLUMNS = ("dead_lettered_at", "dead_letter_at", "dead_at")
DEAD_LETTER_STATE_COLUMNS = ("state", "status")
LAST_ERROR_MAX_CHARS = 500


def delivery_of(row: Any) -> Delivery:
    """Delivered when `delivered_at` is set; dead when a dead-letter mark is set, or when it failed and no
    attempt is scheduled any more; failed (retrying) when it has been tried; pending before the first try."""
    fields = row._mapping
    dead = any(fields.get(name) is not None for name in DEAD_LETTER_TIME_COLUMNS) or any(
        str(fields.get(name) or "").lower() in ("dead", "dead_letter", "dead_lettered")
        for name in DEAD_LETTER_STATE_COLUMNS
    )
    attempts = int(fields.get("attempts") or 0)
    next_attempt_at = fields.get("next_attempt_at")
    if fields.get("delivered_at") is not None:
        state = "delivered"
    elif dead or (attempts > 0 and next_attempt_at is None):
        state = "dead"
    elif attempts > 0:
        state = "failed"
    else:
        state = "pending"
    last_error = fields.get("last_error")
    return Delivery(
        state=state,
        attempts=attempts,
        delivered_at=fields.get("delivered_at"),
        next_attempt_at=None if state in ("delivered", "dead") else next_attempt_at,
        last_error=last_error[:LAST_ERROR_MAX_CHARS] if last_error else None,
    )


def days_between(first_day: date, last_day: date) -> list[date]:
    return [first_day + timedelta(days=offset) for offset in range((last_day - first_day).days + 1)]


def usage_days(rows: list[Any], first_day: date, last_day: date) -> list[UsageDay]:
    """Every day of the period (empty ones too, so a chart has no gaps), WABAs by id within a day."""
    by_day: dict[date, list[WabaUsage]] = defaultdict(list)
    for row in rows:
        by_day[row.day].append(WabaUsage(row.waba_id, int(row.spent_minor), int(row.messages)))
    return [
        UsageDay(
            day,
            sum(w.amount for w in by_day.get(day, [])),
            sum(w.messages for w in by_day.get(day, [])),
            by_day.get(day, []),
        )
        for day in days_between(first_day, last_day)
    ]


@translates_storage_errors
class Reports:
    def __init__(
        self,
        database: Database,
        sealer: PiiSealer,
        *,
        clock: Callable[[], datetime] | None = None,
        export_page_rows: int = EXPORT_PAGE_ROWS,
    ) -> None:
        self.database = database
        self.export_page_rows = export_page_rows
        self.sealer = sealer
        self.clock = clock or (lambda: datetime.now(UTC))
        self.cursors = CursorSigner(sealer.cursor_key)

    async def _company(self, connection: Any, company_id: int) -> Any:
        company = await company_store.get_company(connection, company_id)
        if company is None:
            raise BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
        return company

    async def _check_waba(self, connection: Any, company_id: int, waba_id: str | None) -> None:
        """Another company's WABA answers exactly like one that does not exist."""
        if waba_id is not None and not await company_store.waba_exists(connection, company_id, waba_id):
            raise BillingError(Rejection.UNKNOWN_WABA, "no such WABA in this company", {"waba_id": waba_id})

    async def _log_query(self, connection: Any, company_id: int, filters: LogFilter) -> tuple[Any, log_store.LogQuery]:
        company = await self._company(connection, company_id)
        await self._check_waba(connection, company_id, filters.waba_id)
        since, until = _bounds(filters, company.timezone)
        phone_hashes = None
        if filters.phone_number is not None:
            if normalize_phone(filters.phone_number) is None:
                raise BillingError(Rejection.INVALID_REQUEST, "phone_number holds no digits", {"field": "phone_number"})
            phone_hashes = tuple(self.sealer.search_hashes(filters.phone_number))
        query = log_store.LogQuery(
            waba_id=filters.waba_id,
            since=since,
            until=until,
            category=filters.category,
            broadcast_id=filters.broadcast_id,
            phone_number_hashes=phone_hashes,
        )
        return company, query

    async def logs(self, company_id: int, filters: LogFilter, *, cursor: str | None, limit: int) -> LogPage:
        """Deductions and refunds, newest first, keyset-paginated by a signed cursor."""
        if not 1 <= limit <= LOG_PAGE_MAX:
            raise BillingError(Rejection.INVALID_REQUEST, f"limit is 1..{LOG_PAGE_MAX}", {"field": "limit"})
        after = _log_position(self.cursors.decode("mcc_logs", company_id, cursor)) if cursor else None
        async with self.database.read() as connection:
            company, query = await self._log_query(connection, company_id, filters)
            rows = await _merged_page(connection, company_id, query, after=after, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = self.cursors.encode(
                "mcc_logs", company_id, [last.created_at.isoformat(), last.rank, last.row_id]
            )
        return LogPage([self._row(r) for r in rows], next_cursor, company.show_waba_id, company.currency)

    def _row(self, row: Any) -> LogRow:
        # By position (log_store.ROW_COLUMNS): a million-row export reads ~20 fields a row.
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
            self.sealer.open(name_enc),
            self.sealer.open(phone_enc),
            bool(refunded),
        )

    async def export(self, company_id: int, filters: LogFilter) -> Export:
        """Check access and filters now; the pages stream later, each in its own short read (constant memory)."""
        async with self.database.read() as connection:
            company, query = await self._log_query(connection, company_id, filters)
        pages = self._export_pages(company_id, query, self.export_page_rows)
        return Export(company_id, bool(company.show_waba_id), company.currency, company.timezone, pages)

    async def _export_pages(
        self, company_id: int, query: log_store.LogQuery, page_rows: int
    ) -> AsyncIterator[ExportPage]:
        """Pages in order, the next one read while the caller formats and sends this one.

        One page ahead at most (the bound on what is held): the database
        works on the next page while this process formats the current one,
        instead of each waiting for the other.
        """

        async def read(after: log_store.Position | None) -> Sequence[Sequence[Any]]:
            async with self.database.read() as connection:
                return await log_store.export_page(connection, company_id, query, after=after, limit=page_rows)

        ahead: asyncio.Task[Sequence[Sequence[Any]]] | None = asyncio.ensure_future(read(None))
        try:
            while ahead is not None:
                rows = await asyncio.shield(ahead)  # a cancelled download leaves the read to finish (below)
                full = len(rows) == page_rows
                ahead = asyncio.ensure_future(read(log_store.export_position(rows[-1]))) if full else None
                if rows:
                    names = self.sealer.open_all([row[_NAME_AT] for row in rows])
                    phones = self.sealer.open_all([row[_PHONE_AT] for row in rows])
                    yield ExportPage(rows, names, phones)
        finally:
            if ahead is not None and not ahead.done():
                _let_finish(ahead)

    async def usage(
        self,
        company_id: int,
        *,
        since: date | datetime | None = None,
        until: date | datetime | None = None,
        waba_id: str | None = None,
    ) -> UsageSeries:
        """Spend and messages per day (company timezone) and per WABA; both ends included; default this cycle."""
        async with self.database.read() as connection:
            company = await self._company(connection, company_id)
            await self._check_waba(connection, company_id, waba_id)
            first_day, last_day = await self._usage_period(connection, company, since, until)
            rows = await usage_store.daily_usage(
                connection, company_id=company_id, first_day=first_day, last_day=last_day, waba_id=waba_id
            )
        return UsageSeries(company.currency, usage_days(rows, first_day, last_day))

    async def _usage_period(
        self, connection: Any, company: Any, since: date | datetime | None, until: date | datetime | None
    ) -> tuple[date, date]:
        timezone = company.timezone
        # The pool's cycle, or a v2 company's first package's (their anchor days are the company's terms).
        packages = await pool_store.company_packages(connection, company.company_id, for_update=False)
        pool = packages[0] if packages else None
        now = self.clock()
        if pool is not None:
            starts_at, ends_at = cycle.cycle_bounds(now, anchor_day=pool.state.anchor_day, timezone=timezone)
            cycle_first, cycle_last = (
                usage_store.local_day(starts_at, timezone),
                usage_store.local_day(ends_at, timezone) - timedelta(days=1),
            )
        else:
            today = usage_store.local_day(now, timezone)
            cycle_first = today.replace(day=1)
            cycle_last = (cycle_first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        first_day = _as_day(since, timezone) if since is not None else cycle_first
        last_day = _as_day(until, timezone) if until is not None else max(cycle_last, first_day)
        if first_day > last_day:
            raise BillingError(Rejection.INVALID_REQUEST, "from is after to", {"field": "from"})
        if (last_day - first_day).days + 1 > USAGE_DAYS_MAX:
            raise BillingError(
                Rejection.INVALID_REQUEST, f"a usage period is at most {USAGE_DAYS_MAX} days", {"field": "to"}
            )
        return first_day, last_day

    async def events(self, company_id: int, *, cursor: str | None, limit: int) -> EventPage:
        """The company's events with their delivery state, newest first, keyset-paginated."""
        if not 1 <= limit <= EVENT_PAGE_MAX:
            raise BillingError(Rejection.INVALID_REQUEST, f"limit is 1..{EVENT_PAGE_MAX}", {"field": "limit"})
        after = _event_position(self.cursors.decode("billing_events", company_id, cursor)) if cursor else None
        async with self.database.read() as connection:
            await self._company(connection, company_id)
            rows = await log_store.event_page(connection, company_id, after=after, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = self.cursors.encode("billing_events", company_id, [last.created_at.isoformat(), last.id])
        return EventPage(
            [EventRow(r.event_id, r.event_type, r.created_at, dict(r.payload), delivery_of(r)) for r in rows],
            next_cursor,
        )

    async def preferences(self, company_id: int) -> dict[str, bool]:
        async with self.database.read() as connection:
            company = await self._company(connection, company_id)
        return {"show_waba_id": bool(company.show_waba_id)}

    async def set_preferences(self, company_id: int, *, show_waba_id: bool) -> dict[str, bool]:
        async with self.database.transaction() as connection:
            await self._company(connection, company_id)
            await company_store.update_company(connection, company_id, show_waba_id=show_waba_id)
        return {"show_waba_id": show_waba_id}
