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
words) is made inert (OWASP, CSV injection), so that no spreadsheet in any
locale runs it:

- a cell that starts with a formula character (`=`, `+`, `-`, `@` or their
  full-width forms `＝＋－＠`), with a tab or a carriage return, or with
  blanks (any white space, NBSP, zero-width spaces) followed by a formula
  character, is prefixed with `'`: the spreadsheet shows it as text, and a
  phone number `+62…` stays readable instead of becoming a number;
- inside a cell, a `;`, tab, carriage return or line feed followed (after
  blanks) by a formula character gets a `'` right after it: a spreadsheet
  whose separator is `;` (or that splits on tabs or a broken line) starts a
  new cell there, and that cell starts with the `'` (`x;=1+1` → `x;'=1+1`).

Cells are quoted exactly as the csv module quotes them (separators, quotes
and line breaks).

A million-row export formats every row here, so `CsvRows` does per export
what it can (the zone, the currency's exponent, the cells of the columns with
few distinct values, made inert and quoted once) and per row as little as it
can: a line is joined as it is. The cells nearly every row has its own (name,
phone, message) are checked a chunk at a time, in one pass over them joined;
a chunk where any needs more is written line by line with every check.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import cast
from zoneinfo import ZoneInfo

from wabapool.domain.money import currency_exponent
from wabapool.masking import mask_name, mask_phone
from wabapool.service.reports.export import ExportPage
from wabapool.storage.logs import EXPORT_COLUMNS, REFUND_RANK, ExportRow

BOM = "\ufeff"
# What a spreadsheet takes for the start of a formula, ASCII and full-width.
FORMULA_CHARACTERS = "=+-@\uff1d\uff0b\uff0d\uff20"
# Always prefixed at a cell's start (OWASP's list: a spreadsheet may drop them and read what follows).
FORMULA_STARTS = (*FORMULA_CHARACTERS, "\t", "\r")
# Characters a spreadsheet may skip before a formula: white space (NBSP included), the invisible ones, and a
# quote (a `;` reading may take a cell that starts with one for a quoted cell).
SKIPPED_BEFORE_FORMULA = '\u200b\u200c\u200d\u2060\ufeff"'
_BLANKS = r"\s" + re.escape(SKIPPED_BEFORE_FORMULA)
# Where a spreadsheet may start a new cell inside ours: a `;` locale's separator, a tab, a broken line.
CELL_BREAKS = ";\t\r\n"
_FORMULA_CLASS = "[" + re.escape(FORMULA_CHARACTERS) + "]"
_RUNS_AT_START = re.compile(rf"[\t\r]|[{_BLANKS}]*{_FORMULA_CLASS}")
_RUNS_AFTER_BREAK = re.compile(rf"(\r\n|[;\t\r\n])(?=[{_BLANKS}]*{_FORMULA_CLASS})")
_FORMULA_FIRST = frozenset(FORMULA_STARTS)
_WIDE_FORMULA_CHARACTERS = tuple(character for character in FORMULA_CHARACTERS if not character.isascii())
_FILENAME_UNSAFE = re.compile(r"[^0-9A-Za-z._-]+")
FILENAME_PART_MAX = 40
LINE_END = "\r\n"
# Lines per chunk of the response: ~160 KB at ~160 bytes a line, big enough that a send's own cost is nothing
# beside the formatting, small enough that the client gets bytes while the rest of the page is formatted.
CHUNK_LINES = 1000
# Distinct unit prices and amounts whose text is kept (a price list has a handful; quantity × price a few
# more): past this many, the rest are formatted each time rather than held.
MONEY_TEXT_CACHE_MAX = 4096
# Distinct free-text values of the columns with few (broadcast, WABA, category, bucket, code) whose cell text
# is kept per export; past this many, the rest are made inert and quoted each time rather than held.
FREE_TEXT_CACHE_MAX = 4096
_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_LAST_MICROSECOND_OF_HOUR = timedelta(hours=1, microseconds=-1)
_MINUTES_PER_HOUR = 60
_MINUTE_STEPS = tuple(timedelta(minutes=minute) for minute in range(_MINUTES_PER_HOUR))
_NO_TIME = datetime.min.replace(tzinfo=UTC)
_SECONDS_AT = len("YYYY-MM-DDTHH:MM:")
_OFFSET_AT = len("YYYY-MM-DDTHH:MM:SS")
_MICROSECOND_PAD = 1_000_000
_TWO_DIGITS = tuple(f"{second:02d}" for second in range(60))

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
_MESSAGE_OF = itemgetter(EXPORT_COLUMNS.index("message_id"))
FREE_TEXT_COLUMNS = frozenset(
    ("Broadcast ID", "WABA ID", "Category", "Customer Name", "Phone Number", "Bucket Credited", "Message ID",
     "Deduction Code")
)  # fmt: skip


class _Echo:
    """A 'file' whose write returns what it was given: `csv.writer(_Echo()).writerow(cells)` is the line."""

    def write(self, text: str) -> str:
        return text


_CSV_LINE = csv.writer(_Echo(), lineterminator=LINE_END)


def major_text(amount_minor: int, exponent: int) -> str:
    """Exact decimal text of a minor-unit amount (`-1234.50`), by integer arithmetic. Same text as
    `money.format_major`."""
    if exponent == 0:
        return str(amount_minor)
    # The digits, zero-padded to one before the point, split by slicing: half the time of divmod and format.
    if amount_minor < 0:
        digits = str(-amount_minor).rjust(exponent + 1, "0")
        return "-" + digits[:-exponent] + "." + digits[-exponent:]
    digits = str(amount_minor).rjust(exponent + 1, "0")
    return digits[:-exponent] + "." + digits[-exponent:]


def inert(value: str | None) -> str:
    """A free-text cell a spreadsheet cannot run, in any locale (the rules in the module docstring)."""
    if not value:
        return ""
    if _RUNS_AT_START.match(value):
        value = "'" + value
    return _inert_parts(value)


def _inert_parts(value: str) -> str:
    """A `'` after every cell break that a formula follows (`x;=1` → `x;'=1`)."""
    if not any(mark in value for mark in CELL_BREAKS):
        return value
    return _RUNS_AFTER_BREAK.sub(r"\1'", value)


def header(*, show_waba_id: bool) -> str:
    """The BOM and the header line."""
    columns = COLUMNS if show_waba_id else COLUMNS[:_WABA_COLUMN] + COLUMNS[_WABA_COLUMN + 1 :]
    line: str = _CSV_LINE.writerow(columns)
    return BOM + line


class _LocalTimes:
    """ISO 8601 text of UTC times in one timezone, as `at.astimezone(zone).isoformat()` writes it.

    Rows come in time order, so the zone is asked once per hour of UTC: when
    the hour's first and last microsecond have the same offset, and it is in
    whole minutes, the hour is steady (tzdata has no hour with two changes)
    and a time's text is its minute's text, kept for the hour, plus the
    seconds. An hour in which the offset changes, or whose offset has seconds
    (local mean time, before 1900 or so), is converted time by time.
    """

    def __init__(self, timezone: str) -> None:
        self._zone = ZoneInfo(timezone)
        self._start = self._end = _NO_TIME  # the UTC hour held; nothing is in this one
        self._local_start: datetime | None = None  # the hour's start in local wall time; None: not steady
        self._suffix = ""
        self._minutes: list[str | None] = [None] * _MINUTES_PER_HOUR

    def _enter_hour(self, at: datetime) -> None:
        start = at.replace(minute=0, second=0, microsecond=0)
        local = start.astimezone(self._zone)
        offset = local.utcoffset()
        last_offset = (start + _LAST_MICROSECOND_OF_HOUR).astimezone(self._zone).utcoffset()
        steady = offset is not None and offset == last_offset and not offset % _MINUTE
        self._start, self._end = start, start + _HOUR
        self._local_start = local.replace(tzinfo=None) if steady else None
        self._suffix = local.isoformat()[_OFFSET_AT:]
        self._minutes = [None] * _MINUTES_PER_HOUR

    def text(self, at: datetime) -> str:
        if not self._start <= at < self._end:
            self._enter_hour(at)
        local_start = self._local_start
        if local_start is None:
            return at.astimezone(self._zone).isoformat()
        minute = at.minute
        prefix = self._minutes[minute]
        if prefix is None:  # YYYY-MM-DDTHH:MM: of this minute, local
            prefix = self._minutes[minute] = (local_start + _MINUTE_STEPS[minute]).isoformat()[:_SECONDS_AT]
        microsecond = at.microsecond
        if microsecond:  # six digits, as isoformat writes them (str of 1,000,000 + µs, its leading 1 cut)
            return prefix + _TWO_DIGITS[at.second] + "." + str(_MICROSECOND_PAD + microsecond)[1:] + self._suffix
        return prefix + _TWO_DIGITS[at.second] + self._suffix


def cell_text(value: str | None) -> str:
    """A free-text cell as the file holds it: made inert, then quoted as the csv module quotes it."""
    text = inert(value)
    if not text:
        return ""
    quoted: str = _CSV_LINE.writerow((text,))
    return quoted[: -len(LINE_END)]


class _Cells(dict[str | None, str]):
    """`cell_text` of the values seen, up to FREE_TEXT_CACHE_MAX of them (a miss past that is written each
    time): an export's broadcasts, WABAs, categories, buckets and codes are a handful of values a million
    times."""

    def __missing__(self, value: str | None) -> str:
        text = cell_text(value)
        if len(self) < FREE_TEXT_CACHE_MAX:
            self[value] = text
        return text


def _all_plain(values: list[str]) -> bool:
    """Whether these cells go into a line as they are: none starts with a formula character or a blank, and
    none holds a separator, a quote, a `;`, a line break, a tab or an invisible character. One pass of a few
    searches in C over the values joined, not one per value."""
    text = "," + ",".join(values)  # each value after a `,`, as in its line
    if (
        text.count(",") != len(values)
        or ";" in text
        or '"' in text
        or ", " in text
        or ",=" in text
        or ",+" in text
        or ",-" in text
        or ",@" in text
    ):
        return False
    if not text.isascii() and any("," + mark in text for mark in _WIDE_FORMULA_CHARACTERS):
        return False
    return text.isprintable()


class CsvRows:
    """The lines of one export, for one reader: the company's columns, currency and timezone, masked or not."""

    def __init__(self, *, show_waba_id: bool, currency: str, timezone: str, unmasked: bool) -> None:
        self.show_waba_id = show_waba_id
        self.unmasked = unmasked
        self._exponent = currency_exponent(currency)
        self._times = _LocalTimes(timezone)
        self._money: dict[int, str] = {}
        self._cells = _Cells()
        self._separators = len(COLUMNS) - (1 if show_waba_id else 2)
        columns = COLUMNS if show_waba_id else COLUMNS[:_WABA_COLUMN] + COLUMNS[_WABA_COLUMN + 1 :]
        self._free_text = frozenset(at for at, column in enumerate(columns) if column in FREE_TEXT_COLUMNS)

    def header(self) -> str:
        return header(show_waba_id=self.show_waba_id)

    def chunks(self, page: ExportPage) -> Iterator[str]:
        """The page's lines, CHUNK_LINES at a time."""
        names, phones = page.customer_names, page.phone_numbers
        if not self.unmasked:
            names, phones = [mask_name(name) for name in names], [mask_phone(phone) for phone in phones]
        rows = page.rows
        for start in range(0, len(rows), CHUNK_LINES):
            end = start + CHUNK_LINES
            yield self._lines(rows[start:end], names[start:end], phones[start:end])

    def _money_text(self, amount_minor: int) -> str:
        text = self._money.get(amount_minor)
        if text is None:
            text = major_text(amount_minor, self._exponent)
            if len(self._money) < MONEY_TEXT_CACHE_MAX:
                self._money[amount_minor] = text
        return text

    def _lines(self, rows: Sequence[ExportRow], names: list[str | None], phones: list[str | None]) -> str:
        """The chunk's lines. Cells of few distinct values (broadcast, WABA, category, bucket, code) come
        from `_cells`, made inert and quoted once per export; the ones nearly every row has its own (name,
        phone, message) are joined as they are when the chunk's `_all_plain` says none needs anything (the
        phone's leading `+` aside), else every line is written with every check (`_checked_lines`)."""
        formula = _FORMULA_FIRST
        plain_phones = [("'" + phone if phone[0] in formula else phone) if phone else "" for phone in phones]
        plain_names = [name or "" for name in names] if None in names else cast("list[str]", names)
        messages = list(map(_MESSAGE_OF, rows))
        if None in messages:
            messages = [message or "" for message in messages]
        if not _all_plain(plain_names + plain_phones + messages):
            return self._checked_lines(rows, names, phones)
        cells = self._cells
        time_text = self._times.text
        known_money = self._money.get
        money = self._money_text
        exponent = self._exponent
        show_waba_id = self.show_waba_id
        refund = REFUND_RANK
        lines: list[str] = []
        append = lines.append
        for row, name, phone, message in zip(rows, plain_names, plain_phones, messages, strict=True):
            (
                created_at, rank, _row_id, waba_id, broadcast_id, _message_id, category, deduction_code, quantity,
                unit_price, _name_sealed, _phone_sealed, amount, credited_to, balance_after, refunded,
            ) = row  # fmt: skip
            waba = "," + cells[waba_id] if show_waba_id else ""
            if balance_after > 0 and exponent:  # major_text's positive case, inline: it runs once a row
                digits = str(balance_after).rjust(exponent + 1, "0")
                balance = digits[:-exponent] + "." + digits[-exponent:]
            else:
                balance = major_text(balance_after, exponent)
            append(
                f"{time_text(created_at)},{cells[broadcast_id]}{waba},{cells[category]},{name},{phone},{quantity},"
                f"{known_money(unit_price) or money(unit_price)},{known_money(amount) or money(amount)},"
                f"{cells[credited_to]},{balance},{'yes' if refunded else 'no'},"
                f"{'refund' if rank == refund else 'deduction'},{message},{cells[deduction_code]}"
            )
        append("")
        return LINE_END.join(lines)

    def _checked_lines(self, rows: Sequence[ExportRow], names: list[str | None], phones: list[str | None]) -> str:
        """The chunk's lines, each cell checked (a chunk with a cell to make inert or to quote)."""
        formula = _FORMULA_FIRST
        time_text = self._times.text
        money = self._money_text
        exponent = self._exponent
        show_waba_id = self.show_waba_id
        separators = self._separators
        free_text = self._free_text
        lines = []
        for row, name, phone in zip(rows, names, phones, strict=True):
            (
                created_at, rank, _row_id, waba_id, broadcast_id, message_id, category, deduction_code, quantity,
                unit_price, _name_sealed, _phone_sealed, amount, credited_to, balance_after, refunded,
            ) = row  # fmt: skip
            # Free text made inert inline, not by a call per cell: eight such cells a row, a million rows. The
            # rarer cases (blanks before a formula, a cell break inside a cell) are looked for once per line.
            cells = [
                time_text(created_at),
                ("'" + broadcast_id if broadcast_id[0] in formula else broadcast_id) if broadcast_id else "",
                ("'" + category if category[0] in formula else category) if category else "",
                ("'" + name if name[0] in formula else name) if name else "",
                ("'" + phone if phone[0] in formula else phone) if phone else "",
                str(quantity),
                money(unit_price),
                money(amount),
                ("'" + credited_to if credited_to[0] in formula else credited_to) if credited_to else "",
                major_text(balance_after, exponent),
                "yes" if refunded else "no",
                "refund" if rank == REFUND_RANK else "deduction",
                ("'" + message_id if message_id[0] in formula else message_id) if message_id else "",
                ("'" + deduction_code if deduction_code[0] in formula else deduction_code) if deduction_code else "",
            ]
            if show_waba_id:
                cells.insert(_WABA_COLUMN, ("'" + waba_id if waba_id[0] in formula else waba_id) if waba_id else "")
            line = ",".join(cells)
            # A line `inert` must see cell by cell: a `;`, or a cell starting blank (each free-text cell follows a
            # `,`: the time comes first). Every other blank, every cell break and every invisible character is
            # unprintable. Wide on purpose (`a, b` matches); `inert` decides, and leaves a cell made inert above.
            if ";" in line or ", " in line or ',"' in line or not line.isprintable():
                cells = [inert(cell) if at in free_text else cell for at, cell in enumerate(cells)]
                line = ",".join(cells)
            if '"' in line or "\n" in line or "\r" in line or line.count(",") != separators:
                line = _CSV_LINE.writerow(cells)[: -len(LINE_END)]
            lines.append(line)
        lines.append("")
        return LINE_END.join(lines)


def filename(company_id: int, *, broadcast_id: str | None, first_day: date | None, last_day: date | None) -> str:
    """`deductions-<company>-<period>.csv`: the broadcast, the days (company timezone), or `all`."""
    if broadcast_id:
        period = "broadcast-" + (_FILENAME_UNSAFE.sub("_", broadcast_id)[:FILENAME_PART_MAX] or "_")
    elif first_day or last_day:
        period = f"{first_day.isoformat() if first_day else 'start'}_to_{last_day.isoformat() if last_day else 'now'}"
    else:
        period = "all"
    return f"deductions-{company_id}-{period}.csv"
