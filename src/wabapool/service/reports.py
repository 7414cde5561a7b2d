"""What the company's people read: deduction logs, the CSV export, preferences."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from wabapool.domain import cycle
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.money import format_major
from wabapool.pii import PiiSealer
from wabapool.service.cursors import CursorSigner
from wabapool.storage import companies as company_store
from wabapool.storage import logs as log_store
from wabapool.storage import pools as pool_store
from wabapool.storage import usage as usage_store
from wabapool.storage.database import Database

LOG_PAGE_MAX = 200
EVENT_PAGE_MAX = 200
EXPORT_PAGE = 1000
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
    waba_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    category: str | None = None
    broadcast_id: str | None = None


@dataclass(frozen=True, slots=True)
class LogRow:
    deduction_id: int
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
    amount: int
    credited_to: str | None
    allocations: list[dict[str, Any]]
    customer_name: str | None
    phone_number: str | None
    refunded: bool


@dataclass(frozen=True, slots=True)
class LogPage:
    rows: list[LogRow]
    next_cursor: str | None
    show_waba_id: bool
    currency: str


def encode_cursor(created_at: datetime, row_id: int) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(created_at), int(row_id)
    except (ValueError, TypeError) as exc:
        raise BillingError(
            Rejection.INVALID_REQUEST, "cursor is not one this API returned", {"field": "cursor"}
        ) from exc


async def _page(
    connection: Any, company_id: int, filters: LogFilter, *, after: tuple[datetime, int] | None, limit: int
) -> list[Any]:
    return await log_store.deduction_page(
        connection,
        company_id,
        waba_id=filters.waba_id,
        since=filters.since,
        until=filters.until,
        category=filters.category,
        broadcast_id=filters.broadcast_id,
        after=after,
        limit=limit,
    )


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


class Reports:
    def __init__(self, database: Database, sealer: PiiSealer, *, clock: Callable[[], datetime] | None = None) -> None:
        self.database = database
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

    async def logs(self, company_id: int, filters: LogFilter, *, cursor: str | None, limit: int) -> LogPage:
        if not 1 <= limit <= LOG_PAGE_MAX:
            raise BillingError(Rejection.INVALID_REQUEST, f"limit is 1..{LOG_PAGE_MAX}", {"field": "limit"})
        after = decode_cursor(cursor) if cursor else None
        async with self.database.read() as connection:
            company = await self._company(connection, company_id)
            await self._check_waba(connection, company_id, filters.waba_id)
            rows = await _page(connection, company_id, filters, after=after, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
        return LogPage([self._row(r) for r in rows], next_cursor, company.show_waba_id, company.currency)

    def _row(self, row: Any) -> LogRow:
        return LogRow(
            deduction_id=row.id,
            created_at=row.created_at,
            unique_code=row.unique_code,
            waba_id=row.waba_id,
            waba_name=row.waba_name,
            broadcast_id=row.broadcast_id,
            message_id=row.message_id,
            category=row.category,
            deduction_code=row.deduction_code,
            quantity=row.quantity,
            unit_price=row.unit_price_minor,
            amount=row.amount_minor,
            credited_to=row.credited_to,
            allocations=list(row.allocations),
            customer_name=self.sealer.open(row.customer_name_enc),
            phone_number=self.sealer.open(row.phone_number_enc),
            refunded=bool(row.refunded),
        )

    async def export_pages(self, company_id: int, filters: LogFilter) -> tuple[bool, str, AsyncIterator[list[LogRow]]]:
        """Check access now; the pages stream later, each in its own short read."""
        async with self.database.read() as connection:
            company = await self._company(connection, company_id)
            await self._check_waba(connection, company_id, filters.waba_id)

        async def pages() -> AsyncIterator[list[LogRow]]:
            after: tuple[datetime, int] | None = None
            while True:
                async with self.database.read() as connection:
                    rows = await _page(connection, company_id, filters, after=after, limit=EXPORT_PAGE)
                if not rows:
                    return
                yield [self._row(r) for r in rows]
                if len(rows) < EXPORT_PAGE:
                    return
                after = (rows[-1].created_at, rows[-1].id)

        return company.show_waba_id, company.currency, pages()

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
        pool = await pool_store.load_pool(connection, company.company_id, for_update=False)
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


CSV_COLUMNS = (
    "Date",
    "Broadcast ID",
    "Message ID",
    "Category",
    "Deduction Code",
    "Quantity",
    "Amount",
    "Credited To",
    "Customer Name",
    "Phone Number",
    "Refunded",
)


def csv_header(show_waba_id: bool) -> str:
    columns = (*CSV_COLUMNS[:1], "WABA ID", *CSV_COLUMNS[1:]) if show_waba_id else CSV_COLUMNS
    return _csv_line(columns)


def csv_lines(rows: list[dict[str, Any]], *, show_waba_id: bool, currency: str) -> str:
    """Rows already masked for the reader; amounts as exact decimals of the currency."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        values = [row["created_at"].isoformat()]
        if show_waba_id:
            values.append(row["waba_id"])
        values += [
            row["broadcast_id"] or "",
            row["message_id"] or "",
            row["category"] or "",
            row["deduction_code"],
            row["quantity"],
            format_major(row["amount"], currency),
            row["credited_to"] or "",
            _safe_cell(row["customer_name"]),
            _safe_cell(row["phone_number"]),
            "yes" if row["refunded"] else "no",
        ]
        writer.writerow(values)
    return buffer.getvalue()


def _safe_cell(value: str | None) -> str:
    """Spreadsheet formula injection guard for free text (names)."""
    if not value:
        return ""
    return "'" + value if value[0] in "=+-@\t\r" and not value[1:].replace(" ", "").isdigit() else value


def _csv_line(values: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()
