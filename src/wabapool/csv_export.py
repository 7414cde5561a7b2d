"""The deduction logs as a CSV a spreadsheet opens safely: UTF-8 with a BOM, formula-looking cells made inert.

Columns, in order (`WABA ID` only when the company's `show_waba_id` is on):

| column | what it holds |
|---|---|
| Time | when the row happened, ISO 8601 in the company timezone (`2026-11-10T23:30:00+07:00`) |
| Broadcast ID | the broadcast the message belongs to |
| WABA ID | the WABA charged (only with the preference `show_waba_id` on) |
| Category | the message category |
| Customer Name | personal data, masked for roles that may not see it |
| Phone Number | personal data, masked likewise; always text (`'+62…`) |
| Quantity | messages |
| Unit Price | exact decimal in the currency's major unit |
| Amount | quantity × unit price; negative on a refund row (money back to the pool) |
| Bucket Credited | `credited_to` (the first bucket taken from, or given back to on a refund) |
| Balance After | the pool `total` after the row |
| Refunded | `yes` when the deduction was refunded (always `yes` on a refund row) |
| Type | `deduction` or `refund` (a refund is its own row, dated when it happened) |
| Message ID | the message |
| Deduction Code | the price list entry |

Every free-text cell (everything but the numbers, the time and the fixed
words) that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is
prefixed with `'` (OWASP, CSV injection): the spreadsheet shows it as text,
and a phone number `+62…` stays readable instead of becoming a formula or a
number. The csv module quotes separators, quotes and line breaks.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from datetime import date
from zoneinfo import ZoneInfo

from wabapool.domain.money import currency_exponent
from wabapool.masking import mask_name, mask_phone
from wabapool.service.reports import LogRow

BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FILENAME_UNSAFE = re.compile(r"[^0-9A-Za-z._-]+")
FILENAME_PART_MAX = 40

COLUMNS = (
    "Time",
    "Broadcast ID",
    "WABA ID",
    "Category",
    "Customer Name",
    "Phone Number",
    "Quantity",
    "Unit Price",
    "Amount",
    "Bucket Credited",
    "Balance After",
    "Refunded",
    "Type",
    "Message ID",
    "Deduction Code",
)
_WABA_COLUMN = COLUMNS.index("WABA ID")


def major_text(amount_minor: int, exponent: int) -> str:
    """Exact decimal text of a minor-unit amount (`-1234.50`), by integer arithmetic: a CSV formats three
    per row, and Decimal formatting was a sixth of the export's time. Same text as `money.format_major`."""
    if exponent == 0:
        return str(amount_minor)
    whole, fraction = divmod(abs(amount_minor), 10**exponent)
    return f"{'-' if amount_minor < 0 else ''}{whole}.{fraction:0{exponent}d}"


def inert(value: str | None) -> str:
    """A free-text cell a spreadsheet cannot run: a leading formula character gets a `'` in front."""
    if not value:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def header(*, show_waba_id: bool) -> str:
    """The BOM and the header line."""
    columns = COLUMNS if show_waba_id else COLUMNS[:_WABA_COLUMN] + COLUMNS[_WABA_COLUMN + 1 :]
    return BOM + _lines([columns])


def lines(rows: Iterable[LogRow], *, show_waba_id: bool, currency: str, timezone: str, unmasked: bool) -> str:
    """CSV lines for rows as the reader may see them; amounts exact in the currency's major unit."""
    zone = ZoneInfo(timezone)
    exponent = currency_exponent(currency)
    records = []
    for row in rows:
        name = row.customer_name if unmasked else mask_name(row.customer_name)
        phone = row.phone_number if unmasked else mask_phone(row.phone_number)
        record = [
            row.created_at.astimezone(zone).isoformat(),
            inert(row.broadcast_id),
            inert(row.category),
            inert(name),
            inert(phone),
            str(row.quantity),
            major_text(row.unit_price, exponent),
            major_text(row.amount, exponent),
            inert(row.credited_to),
            major_text(row.balance_after, exponent),
            "yes" if row.refunded else "no",
            row.kind,
            inert(row.message_id),
            inert(row.deduction_code),
        ]
        if show_waba_id:
            record.insert(_WABA_COLUMN, inert(row.waba_id))
        records.append(record)
    return _lines(records)


def filename(company_id: int, *, broadcast_id: str | None, first_day: date | None, last_day: date | None) -> str:
    """`deductions-<company>-<period>.csv`: the broadcast, the days (company timezone), or `all`."""
    if broadcast_id:
        period = "broadcast-" + (_FILENAME_UNSAFE.sub("_", broadcast_id)[:FILENAME_PART_MAX] or "_")
    elif first_day or last_day:
        period = f"{first_day.isoformat() if first_day else 'start'}_to_{last_day.isoformat() if last_day else 'now'}"
    else:
        period = "all"
    return f"deductions-{company_id}-{period}.csv"


def _lines(records: Iterable[Iterable[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(records)
    return buffer.getvalue()
