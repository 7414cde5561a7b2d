"""What the company's people read: deduction logs, the CSV export, preferences."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.money import format_major
from wabapool.pii import PiiSealer
from wabapool.storage import companies as company_store
from wabapool.storage import logs as log_store
from wabapool.storage.database import Database

LOG_PAGE_MAX = 200
EXPORT_PAGE = 1000


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


class Reports:
    def __init__(self, database: Database, sealer: PiiSealer) -> None:
        self.database = database
        self.sealer = sealer

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
