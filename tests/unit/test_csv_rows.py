"""The export's fast lines against the documented format, written the plain way: byte for byte the same text.

The reference below is the format as the module docstring documents it, one
cell at a time with the standard tools (the csv module, `isoformat` in the
company zone, `money.format_major`, the masks); `CsvRows` must write exactly
its bytes, whatever the cells hold.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wabapool.domain.money import format_major
from wabapool.masking import mask_name, mask_phone
from wabapool.service.reports import ExportPage
from wabapool.service.reports import csv as csv_export
from wabapool.storage.logs import DEDUCTION_RANK, EXPORT_COLUMNS, REFUND_RANK

WABA = "6660001"


FORMULA = frozenset("=+-@＝＋－＠")
SKIPPED = '\u200b\u200c\u200d\u2060\ufeff"'


def runs(text: str) -> bool:
    """Whether a spreadsheet would take this text for a formula: a formula character after any blanks."""
    rest = text.lstrip()
    while rest and (rest[0] in SKIPPED or rest[0].isspace()):
        rest = rest[1:]
    return rest[:1] in FORMULA


def reference_csv(page: ExportPage, *, show_waba_id: bool, currency: str, timezone: str, unmasked: bool) -> str:
    """The documented format, cell by cell."""

    def text(value: str | None) -> str:
        if not value:
            return ""
        marked = "'" + value if value[0] in "\t\r" or runs(value) else value
        out = []
        for at, character in enumerate(marked):
            out.append(character)
            crlf = marked[at : at + 2] == "\r\n"  # one line break: the `'` goes after its \n
            if character in ";\t\r\n" and not crlf and runs(marked[at + 1 :]):
                out.append("'")
        return "".join(out)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row, name, phone in zip(page.rows, page.customer_names, page.phone_numbers, strict=True):
        cell = dict(zip(EXPORT_COLUMNS, row, strict=True))
        record = [
            cell["created_at"].astimezone(ZoneInfo(timezone)).isoformat(),
            text(cell["broadcast_id"]),
            *([text(cell["waba_id"])] if show_waba_id else []),
            text(cell["category"]),
            text(name if unmasked else mask_name(name)),
            text(phone if unmasked else mask_phone(phone)),
            str(cell["quantity"]),
            format_major(cell["unit_price_minor"], currency),
            format_major(cell["amount_minor"], currency),
            text(cell["credited_to"]),
            format_major(cell["balance_after_minor"], currency),
            "yes" if cell["refunded"] else "no",
            "refund" if cell["rank"] == REFUND_RANK else "deduction",
            text(cell["message_id"]),
            text(cell["deduction_code"]),
        ]
        writer.writerow(record)
    return buffer.getvalue()


def export_row(created_at: datetime, index: int, **cells: Any) -> tuple[Any, ...]:
    values = {
        "created_at": created_at,
        "rank": DEDUCTION_RANK,
        "row_id": index,
        "waba_id": WABA,
        "broadcast_id": "b1",
        "message_id": f"m{index}",
        "category": "marketing",
        "deduction_code": "wa_marketing_id",
        "quantity": 1,
        "unit_price_minor": 1_234,
        "customer_name_enc": b"sealed",
        "phone_number_enc": b"sealed",
        "amount_minor": 1_234,
        "credited_to": "wa_balance_initial",
        "balance_after_minor": 10**9 - index * 1_234,
        "refunded": False,
    } | cells
    return tuple(values[column] for column in EXPORT_COLUMNS)


def fast_csv(page: ExportPage, **settings_: Any) -> list[str]:
    return list(csv_export.CsvRows(**settings_).chunks(page))


HOSTILE = [
    '=HYPERLINK("http://evil","click")',
    "+6281234567890",
    "-1+1",
    "@SUM(A1)",
    "\tx",
    "\rx",
    "a,b",
    'say "hi"',
    "two\nlines",
    "Siti Nurhaliza ✓ 李小龍",
    " =1",
    "\u00a0=1",
    "\u3000+1",
    "\u200b@x",
    "＝1+1",
    "＋62812",
    "－1",
    "＠SUM(A1)",
    "x;=1+1",
    "x; -1",
    'a;"=1"',
    "a\n@b",
    "a\r\n+1",
    "a\t=1",
    "\t",
    "a;b",
    "",
    None,
]


def hostile_page() -> ExportPage:
    """Every hostile value in every free-text column, refunds among the rows, times across zones' changes."""
    start = datetime(2026, 3, 8, 6, 59, 58, tzinfo=UTC)  # New York springs forward at 07:00 UTC
    rows, names, phones = [], [], []
    for index, value in enumerate(HOSTILE * 3):
        rows.append(
            export_row(
                start + timedelta(seconds=index, microseconds=index * 37_001 % 1_000_000),
                index,
                rank=REFUND_RANK if index % 4 == 3 else DEDUCTION_RANK,
                broadcast_id=value,
                message_id=HOSTILE[(index + 1) % len(HOSTILE)],
                category=HOSTILE[(index + 2) % len(HOSTILE)],
                credited_to=HOSTILE[(index + 3) % len(HOSTILE)],
                deduction_code=HOSTILE[(index + 4) % len(HOSTILE)] or "wa_utility_id",
                waba_id=HOSTILE[(index + 5) % len(HOSTILE)] or WABA,
                amount_minor=-1_234 if index % 4 == 3 else 1_234 * (index + 1),
                quantity=index + 1,
                refunded=index % 2 == 0,
                balance_after_minor=5 - index,  # crosses zero: 0.05, 0.04, …, -0.01
            )
        )
        names.append(HOSTILE[(index + 6) % len(HOSTILE)])
        phones.append(HOSTILE[(index + 7) % len(HOSTILE)])
    return ExportPage(rows, names, phones)


@pytest.mark.parametrize("show_waba_id", [False, True])
@pytest.mark.parametrize("unmasked", [True, False])
@pytest.mark.parametrize(
    ("currency", "timezone"),
    [("IDR", "Asia/Jakarta"), ("JPY", "America/New_York"), ("USD", "Asia/Kathmandu"), ("IDR", "UTC")],
)
def test_fast_lines_are_the_documented_format_byte_for_byte_with_hostile_cells(
    show_waba_id: bool, unmasked: bool, currency: str, timezone: str
) -> None:
    page = hostile_page()
    settings_ = {"show_waba_id": show_waba_id, "currency": currency, "timezone": timezone, "unmasked": unmasked}
    written = "".join(fast_csv(page, **settings_))
    assert written == reference_csv(page, **settings_)
    assert written.encode("utf-8") == reference_csv(page, **settings_).encode("utf-8")
    assert_no_cell_runs(written, show_waba_id=show_waba_id)


def assert_no_cell_runs(written: str, *, show_waba_id: bool) -> None:
    """No cell a spreadsheet would evaluate, read with `,` or with a `;` locale's separator, or split at tabs."""
    free_text = csv_export.FREE_TEXT_COLUMNS
    columns = [column for column in csv_export.COLUMNS if show_waba_id or column != "WABA ID"]
    for record in csv.reader(io.StringIO(written)):
        for column, cell in zip(columns, record, strict=True):
            assert column not in free_text or not runs(cell), (column, cell)
    for line in written.split("\n"):
        for part in re.split(r"[;\t\r]", line)[1:]:
            assert not runs(part), (line, part)
    for record in csv.reader(io.StringIO(written, newline=""), delimiter=";"):
        for cell in record[1:]:
            assert not runs(cell), (record, cell)


def test_a_page_longer_than_a_chunk_comes_in_several_chunks_of_whole_lines() -> None:
    start = datetime(2026, 10, 25, 0, 0, tzinfo=UTC)  # Europe/London falls back at 01:00 UTC
    count = csv_export.CHUNK_LINES * 2 + 17
    rows = [export_row(start + timedelta(seconds=index * 7, microseconds=index), index) for index in range(count)]
    page = ExportPage(rows, [f"Customer {index}" for index in range(count)], ["+6281234567890"] * count)
    settings_ = {"show_waba_id": True, "currency": "IDR", "timezone": "Europe/London", "unmasked": False}
    chunks = fast_csv(page, **settings_)
    assert [chunk.count("\r\n") for chunk in chunks] == [csv_export.CHUNK_LINES, csv_export.CHUNK_LINES, 17]
    assert all(chunk.endswith("\r\n") for chunk in chunks)
    assert "".join(chunks) == reference_csv(page, **settings_)


def test_times_before_standard_time_with_an_offset_in_seconds_are_written_as_isoformat_writes_them() -> None:
    # Jakarta kept local mean time (+07:07:12) until 1924: an offset with seconds, converted time by time.
    times = [datetime(1900, 1, 1, 12, 0, 5, tzinfo=UTC), datetime(1900, 1, 1, 12, 0, 6, 250, tzinfo=UTC)]
    page = ExportPage([export_row(at, index) for index, at in enumerate(times)], ["A", "B"], ["1", "2"])
    settings_ = {"show_waba_id": False, "currency": "IDR", "timezone": "Asia/Jakarta", "unmasked": True}
    written = "".join(fast_csv(page, **settings_))
    assert written == reference_csv(page, **settings_)
    assert written.startswith("1900-01-01T19:07:17+07:07:12,")


def test_an_hour_in_which_the_offset_changes_half_way_is_written_time_by_time() -> None:
    # Lord Howe Island moves from +10:30 to +11:00 at 15:30 UTC: the change falls inside an hour of UTC.
    change = datetime(2026, 10, 3, 15, 30, tzinfo=UTC)
    times = [change + timedelta(minutes=minutes) for minutes in (-20, -1, 0, 15, 29, 31)]
    page = ExportPage([export_row(at, index) for index, at in enumerate(times)], ["A"] * 6, ["1"] * 6)
    settings_ = {"show_waba_id": False, "currency": "IDR", "timezone": "Australia/Lord_Howe", "unmasked": True}
    written = "".join(fast_csv(page, **settings_))
    assert written == reference_csv(page, **settings_)
    assert [line[:25] for line in written.splitlines()[1:3]] == [
        "2026-10-04T01:59:00+10:30",
        "2026-10-04T02:30:00+11:00",
    ]


def test_an_empty_page_writes_nothing() -> None:
    settings_ = {"show_waba_id": False, "currency": "IDR", "timezone": "Asia/Jakarta", "unmasked": True}
    assert "".join(fast_csv(ExportPage([], [], []), **settings_)) == ""


cells = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(HOSTILE[:-1]))
moments = st.datetimes(min_value=datetime(1890, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
amounts = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)


@st.composite
def pages(draw: st.DrawFn) -> ExportPage:
    count = draw(st.integers(min_value=0, max_value=12))
    rows: list[Sequence[Any]] = []
    for index in range(count):
        rows.append(
            export_row(
                draw(moments),
                index,
                rank=draw(st.sampled_from([DEDUCTION_RANK, REFUND_RANK])),
                broadcast_id=draw(cells),
                message_id=draw(cells),
                category=draw(cells),
                credited_to=draw(cells),
                deduction_code=draw(st.text(min_size=1, max_size=12)),
                waba_id=draw(st.text(min_size=1, max_size=12)),
                unit_price_minor=draw(amounts),
                amount_minor=draw(amounts),
                balance_after_minor=draw(amounts),
                quantity=draw(st.integers(min_value=1, max_value=10**6)),
                refunded=draw(st.booleans()),
            )
        )
    return ExportPage(rows, [draw(cells) for _ in rows], [draw(cells) for _ in rows])


@settings(max_examples=300, deadline=None)
@given(
    page=pages(),
    show_waba_id=st.booleans(),
    unmasked=st.booleans(),
    currency=st.sampled_from(["IDR", "JPY"]),
    timezone=st.sampled_from(["Asia/Jakarta", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]),
)
def test_any_rows_come_out_as_the_documented_format_byte_for_byte(
    page: ExportPage, show_waba_id: bool, unmasked: bool, currency: str, timezone: str
) -> None:
    settings_ = {"show_waba_id": show_waba_id, "currency": currency, "timezone": timezone, "unmasked": unmasked}
    written = "".join(fast_csv(page, **settings_))
    assert written == reference_csv(page, **settings_)
    assert_no_cell_runs(written, show_waba_id=show_waba_id)
