"""The CSV download: BOM, documented columns, inert formula-looking cells, exact amounts, non-ASCII intact."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.api_support import INTERNAL, INTERNAL_HEADERS, PUBLIC, bearer
from tests.conftest import TEST_PII_KEYS, FakeClock
from tests.pgbouncer import pgbouncer
from tests.reports_support import database_url, deduct, provision, refund, report_app
from tests.waiting import eventually
from wabapool.domain import limits
from wabapool.pii import PiiSealer
from wabapool.service import DeductionRequest
from wabapool.service.reports import LogFilter, reader
from wabapool.storage import logs as log_store

WABA = "6660001"
EVIL_BROADCAST = '=HYPERLINK("http://evil","click")'


@pytest.fixture(params=["sqlite", "postgres"])
async def app(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[tuple[httpx.AsyncClient, FakeClock]]:
    postgres = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    clock = FakeClock(datetime(2026, 11, 10, 16, 30, tzinfo=UTC))  # 23:30 in Jakarta
    async with report_app(database_url(request.param, tmp_path, postgres), clock) as (client, context):
        await provision(client, 1, wabas=(WABA,), unit_price=1_234, allowance=1_000_000)
        context.reports.export_page_rows = 100  # several pages without writing thousands of rows
        client.context = context  # type: ignore[attr-defined]
        yield client, clock


async def download(client: httpx.AsyncClient, role: str = "owner", **params: str) -> httpx.Response:
    response = await client.get(f"{PUBLIC}/download_broadcast_deduction", params=params, headers=bearer(1, role))
    assert response.status_code == 200, response.text
    return response


def table(response: httpx.Response) -> list[dict[str, str]]:
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))


async def test_hostile_cells_come_out_inert_and_readable_and_amounts_exact(app) -> None:
    client, clock = app
    # The API refuses formula-leading ids (tests/integration/test_hostile_inputs.py); rows stored before that
    # rule, or by another writer, still come out inert: this one is written through the engine itself.
    outcome = await client.context.service.deduct_one(  # type: ignore[attr-defined]
        DeductionRequest(
            company_id=1,
            billing_code="whatsapp",
            deduction_code="wa_marketing_id",
            unique_code="m1",
            quantity=3,
            waba_id=WABA,
            broadcast_id=EVIL_BROADCAST,
            message_id="-1+1",
            category="=cat()",
            customer_name="=1",
            phone_number="+6281234567890",
        )
    )
    assert outcome.status == "applied", outcome
    await deduct(
        client, 1, "m2", waba_id=WABA, broadcast_id="b2", customer_name="Siti Nurhaliza ✓ 李小龍", phone_number="@62"
    )
    clock.advance(hours=1)
    await refund(client, 1, "m2", "r2")
    rows = table(await download(client))
    assert [row["Type"] for row in rows] == ["refund", "deduction", "deduction"]
    refund_row, second, first = rows
    assert first["Broadcast ID"] == "'" + EVIL_BROADCAST
    assert first["Message ID"] == "'-1+1" and first["Category"] == "'=cat()"
    assert first["Customer Name"] == "'=1" and first["Phone Number"] == "'+6281234567890"
    assert first["Quantity"] == "3" and first["Unit Price"] == "12.34" and first["Amount"] == "37.02"
    assert first["Balance After"] == "9962.98" and first["Bucket Credited"] == "wa_balance_initial"
    assert first["Time"] == "2026-11-10T23:30:00+07:00" and first["Refunded"] == "no"
    assert second["Customer Name"] == "Siti Nurhaliza ✓ 李小龍" and second["Phone Number"] == "'@62"
    assert second["Refunded"] == "yes"
    assert refund_row["Amount"] == "-12.34" and refund_row["Time"] == "2026-11-11T00:30:00+07:00"
    assert "WABA ID" not in rows[0]
    # Nothing a spreadsheet would evaluate: every text cell that starts like a formula carries the quote.
    for row in rows:
        for column in ("Broadcast ID", "Message ID", "Category", "Customer Name", "Phone Number"):
            assert not row[column].startswith(("=", "+", "-", "@", "\t", "\r")), (column, row[column])


async def test_the_waba_column_follows_the_preference_and_the_name_the_period(app) -> None:
    client, _clock = app
    await deduct(client, 1, "m1", waba_id=WABA)
    hidden = await download(client, **{"from": "2026-11-01", "to": "2026-11-30"})
    assert 'filename="deductions-1-2026-11-01_to_2026-11-30.csv"' in hidden.headers["content-disposition"]
    assert hidden.headers["content-type"].startswith("text/csv")
    assert list(table(hidden)[0]) == [
        "Time",
        "Broadcast ID",
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
    ]
    await client.put(f"{PUBLIC}/billing_preferences", json={"show_waba_id": True}, headers=bearer(1))
    shown = table(await download(client, broadcast_id="nothing-yet"))
    assert shown == []
    shown = table(await download(client))
    assert list(shown[0])[:3] == ["Time", "Broadcast ID", "WABA ID"] and shown[0]["WABA ID"] == WABA


async def test_a_supervisor_gets_masked_personal_data_still_inert(app) -> None:
    client, _clock = app
    await deduct(client, 1, "m1", waba_id=WABA, customer_name="x y", phone_number="+6281234567890")
    row = table(await download(client, role="supervisor"))[0]
    assert row["Customer Name"] == "* *" and row["Phone Number"] == "'+62812****7890"


async def test_the_export_streams_every_row_of_several_pages_once(app) -> None:
    client, _clock = app
    items = [
        {
            "company_id": 1,
            "billing_code": "whatsapp",
            "deduction_code": "wa_marketing_id",
            "unique_code": f"bulk-{index}",
            "quantity": 1,
            "extra_attrs": {"waba_id": WABA},
        }
        for index in range(700)
    ]
    for start in (0, 350):
        response = await client.post(
            f"{INTERNAL}/quota-managements/deductions",
            json={"items": items[start : start + 350]},
            headers=INTERNAL_HEADERS,
        )
        assert response.status_code == 200
    rows = table(await download(client))
    assert len(rows) == 700 and len({row["Balance After"] for row in rows}) == 700
    assert sum(int(row["Amount"].replace(".", "")) for row in rows) == 700 * 1_234


async def test_refunds_between_deductions_come_in_time_order_whatever_the_chunk_size(app, monkeypatch) -> None:
    client, clock = app
    for index in range(12):
        await deduct(client, 1, f"m{index}", waba_id=WABA, message_id=f"m{index}")
        clock.advance(minutes=1)
        if index % 3 == 2:  # a refund between later deductions: the two streams interleave across chunks
            await refund(client, 1, f"m{index - 1}", f"r{index}")
            clock.advance(minutes=1)
    reports = client.context.reports
    reports.export_page_rows = 1000
    whole = table(await download(client))
    kinds = [(row["Message ID"], row["Type"]) for row in whole]
    assert len(kinds) == 16 and kinds.count(("m1", "refund")) == 1
    assert [row["Time"] for row in whole] == sorted((row["Time"] for row in whole), reverse=True)
    for rows in (1, 2, 3, 5):
        reports.export_page_rows = rows
        assert table(await download(client)) == whole
    monkeypatch.setattr(reader, "EXPORT_RUN_ROWS", 4)  # a stream's run ends every few rows; the next goes on
    reports.export_page_rows = 3
    assert table(await download(client)) == whole


async def test_an_export_streams_through_pgbouncer_in_transaction_mode(postgres_url: str) -> None:
    # The streamed runs' cursors live in one transaction, so PgBouncer keeps them on one server connection.
    clock = FakeClock(datetime(2026, 11, 10, 16, 30, tzinfo=UTC))
    with pgbouncer(postgres_url) as url:
        async with report_app(url, clock) as (client, context):
            await provision(client, 1, wabas=(WABA,), unit_price=1_234, allowance=1_000_000)
            for index in range(9):
                await deduct(client, 1, f"m{index}", waba_id=WABA, message_id=f"m{index}")
                clock.advance(minutes=1)
            await refund(client, 1, "m4", "r4")
            context.reports.export_page_rows = 2
            rows = table(await download(client))
            assert [(row["Message ID"], row["Type"]) for row in rows][:2] == [("m4", "refund"), ("m8", "deduction")]
            assert len(rows) == 10 and context.reports._streams == 0


async def test_a_filtered_export_has_exactly_its_rows_across_a_key_rotation(app) -> None:
    client, clock = app
    phone = "+6281234567890"
    await deduct(
        client, 1, "m1", waba_id=WABA, message_id="m1", phone_number=phone, customer_name="Budi", broadcast_id="b1"
    )
    await deduct(client, 1, "m2", waba_id=WABA, message_id="m2", phone_number="+6281299999999", broadcast_id="b1")
    clock.advance(days=2)
    await deduct(client, 1, "m3", waba_id=WABA, message_id="m3", phone_number="62 812-3456-7890", broadcast_id="b2")
    await refund(client, 1, "m1", "r1")
    # A key appended: the phone is searched under both keys' hashes, and the old values open with the old key.
    new_key = "k2:" + base64.b64encode(b"k" * 32).decode()
    client.context.reports.sealer = PiiSealer(f"{TEST_PII_KEYS},{new_key}")

    def kinds(rows: list[dict[str, str]]) -> list[tuple[str, str]]:
        return [(row["Message ID"], row["Type"]) for row in rows]

    by_phone = table(await download(client, phone_number=phone))
    assert kinds(by_phone) == [("m1", "refund"), ("m3", "deduction"), ("m1", "deduction")]
    assert by_phone[2]["Customer Name"] == "Budi" and by_phone[2]["Phone Number"] == "'" + phone
    by_day = table(await download(client, **{"from": "2026-11-12", "to": "2026-11-12"}))
    assert kinds(by_day) == [("m1", "refund"), ("m3", "deduction")]
    by_broadcast = table(await download(client, broadcast_id="b1"))
    assert kinds(by_broadcast) == [("m1", "refund"), ("m2", "deduction"), ("m1", "deduction")]


async def test_an_export_closed_after_its_first_page_ends_its_pipeline_and_gives_back_its_slot(app) -> None:
    client, _clock = app
    for index in range(3):
        await deduct(client, 1, f"m{index}", waba_id=WABA)
    reports = client.context.reports
    reports.export_page_rows = 1
    export = await reports.export(1, LogFilter(), unmasked=True)
    assert reports.export_slots.running(1) == 1
    body = export.body()
    assert (await anext(body)).startswith("\ufeff".encode())
    first = await anext(body)
    assert first.count(b"\r\n") == 1
    await body.aclose()  # type: ignore[attr-defined]

    await eventually(lambda: export.ended, what="the closed export's pipeline to end")  # its read finished
    assert reports.export_slots.running(1) == 0
    assert len(table(await download(client))) == 3  # the pool's connections are all usable


async def test_an_export_that_never_starts_gives_back_its_slot_when_closed(app) -> None:
    client, _clock = app
    reports = client.context.reports
    export = await reports.export(1, LogFilter(), unmasked=True)
    assert reports.export_slots.running(1) == 1 and not export.ended
    export.close()
    assert export.ended and reports.export_slots.running(1) == 0


async def test_a_client_that_stops_reading_stops_the_pipeline_after_a_bounded_number_of_pages(app) -> None:
    client, _clock = app
    for index in range(30):
        await deduct(client, 1, f"m{index}", waba_id=WABA)
    reports = client.context.reports
    reports.export_page_rows = 1
    pages_read = 0
    export = await reports.export(1, LogFilter(), unmasked=True)
    read_run = export._read_run

    async def counting(after: object) -> AsyncIterator[object]:
        nonlocal pages_read
        async for rows in read_run(after):  # type: ignore[arg-type]
            pages_read += 1
            yield rows

    export._read_run = counting  # type: ignore[assignment]
    # The pipeline parked: it tries to put a page into the full queue (a pipeline without back-pressure never
    # does, it reads on). Parked, it cannot read, so the count seen then is the count for good: no pause needed.
    parked_after: list[int] = []
    queue_put = export._queue.put

    async def watched_put(item: bytes | BaseException | None) -> None:
        if export._queue.full():
            parked_after.append(pages_read)
        await queue_put(item)

    export._queue.put = watched_put  # type: ignore[method-assign]
    body = export.body()
    await anext(body)  # the header: the pipeline starts, and nobody reads further
    held = limits.EXPORT_QUEUE_PAGES + 1  # the queue full, and one page formatted waiting for room

    await eventually(lambda: parked_after, what="the pipeline to wait for room in the full queue")
    assert parked_after == [held] and pages_read == held and export._queue.full()
    # Parked, it holds no database connection (a stream's run ended before the wait), so stalled exports
    # cannot take the read pool from everyone else.
    assert reports.database.read_engine.pool.checkedout() == 0 and reports._streams == 0
    await anext(body)  # the client reads a page: the pipeline reads one more, and waits again
    await eventually(lambda: len(parked_after) == 2, what="the pipeline to wait for room again after one page")
    assert parked_after == [held, held + 1] and pages_read == held + 1
    await body.aclose()  # type: ignore[attr-defined]


async def test_the_eleventh_export_of_a_company_at_once_is_refused_with_429_and_retry_after(app) -> None:
    client, _clock = app
    reports = client.context.reports
    held = [await reports.export(1, LogFilter(), unmasked=True) for _ in range(limits.EXPORTS_PER_COMPANY)]
    response = await client.get(f"{PUBLIC}/download_broadcast_deduction", headers=bearer(1, "owner"))
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "too_many_exports"
    assert response.headers["retry-after"] == str(limits.EXPORT_RETRY_AFTER_SECONDS)
    held.pop().close()
    assert len(table(await download(client))) == 0  # a slot freed is a download served
    for export in held:
        export.close()
    assert reports.export_slots.running() == 0


async def test_export_rows_come_with_the_columns_in_the_order_the_csv_reads_them(app) -> None:
    client, _clock = app
    await deduct(client, 1, "m1", waba_id=WABA)
    await refund(client, 1, "m1", "r1")
    async with client.context.service.database.read() as connection:
        rows = await log_store.export_page(connection, 1, log_store.LogQuery(), after=None, limit=2)
    for row in rows:
        names = tuple(row.keys()) if hasattr(row, "keys") else tuple(row._fields)
        assert names == log_store.EXPORT_COLUMNS
    assert [row[1] for row in rows] == [log_store.REFUND_RANK, log_store.DEDUCTION_RANK]
    assert rows[0][log_store.EXPORT_COLUMNS.index("credited_to")] == "wa_balance_initial"
