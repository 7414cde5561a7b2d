"""`Reports`: the one object the API reads the company's reports through (logs, CSV, usage, events, preferences)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from operator import itemgetter

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.limits import EXPORT_FORMAT_THREADS, EXPORT_PAGE_ROWS, EXPORTS_OPEN_MAX, EXPORTS_PER_COMPANY
from wabapool.pii import PiiSealer
from wabapool.service.context import Clock
from wabapool.service.cursors import CursorSigner
from wabapool.service.errors import translates_storage_errors
from wabapool.service.reports import csv as csv_format
from wabapool.service.reports import events as event_reports
from wabapool.service.reports import logs as log_reports
from wabapool.service.reports import usage as usage_reports
from wabapool.service.reports.companies import check_waba, company_of
from wabapool.service.reports.export import (
    EXPORT_RUN_ROWS,
    EXPORT_STREAMS_MAX,
    CompanyLeases,
    Export,
    ExportPage,
    ExportSlots,
)
from wabapool.storage import companies as company_store
from wabapool.storage import logs as log_store
from wabapool.storage import usage as usage_store
from wabapool.storage.database import Database

_NAME_OF = itemgetter(log_store.EXPORT_COLUMNS.index("customer_name_enc"))
_PHONE_OF = itemgetter(log_store.EXPORT_COLUMNS.index("phone_number_enc"))


@translates_storage_errors
class Reports:
    def __init__(
        self,
        database: Database,
        sealer: PiiSealer,
        *,
        clock: Clock | None = None,
        export_page_rows: int = EXPORT_PAGE_ROWS,
        exports_per_company: int = EXPORTS_PER_COMPANY,
        export_leases: CompanyLeases | None = None,
    ) -> None:
        self.database = database
        self.export_page_rows = export_page_rows
        self.sealer = sealer
        self.clock = clock or (lambda: datetime.now(UTC))
        self.cursors = CursorSigner(sealer.cursor_key)
        self.export_slots = ExportSlots(per_company=exports_per_company, total=EXPORTS_OPEN_MAX, leases=export_leases)
        self._formatters: ThreadPoolExecutor | None = None
        self._streams = 0  # export runs streaming from a cursor now (each holds a read connection)

    def _format_threads(self) -> ThreadPoolExecutor:
        """The export threads, started with the first export (again after a `close`: an app may restart)."""
        if self._formatters is None:
            self._formatters = ThreadPoolExecutor(EXPORT_FORMAT_THREADS, thread_name_prefix="csv-export")
        return self._formatters

    async def close(self) -> None:
        """At app shutdown: stop the export threads (a page being formatted is finished first) and let go of
        the export leases' store."""
        if self._formatters is not None:
            self._formatters.shutdown(wait=False, cancel_futures=True)
            self._formatters = None
        await self.export_slots.close()

    async def logs(
        self, company_id: int, filters: log_reports.LogFilter, *, cursor: str | None, limit: int
    ) -> log_reports.LogPage:
        """Deductions and refunds, newest first, keyset-paginated by a signed cursor."""
        if not 1 <= limit <= log_reports.LOG_PAGE_MAX:
            raise BillingError(Rejection.INVALID_REQUEST, f"limit is 1..{log_reports.LOG_PAGE_MAX}", {"field": "limit"})
        after = log_reports.log_position(self.cursors.decode("mcc_logs", company_id, cursor)) if cursor else None
        async with self.database.read() as connection:
            company, query = await log_reports.log_query(connection, self.sealer, company_id, filters)
            rows = await log_reports.merged_page(connection, company_id, query, after=after, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = self.cursors.encode(
                "mcc_logs", company_id, [last.created_at.isoformat(), last.rank, last.row_id]
            )
        page_rows = [log_reports.log_row(self.sealer, row) for row in rows]
        return log_reports.LogPage(page_rows, next_cursor, company.show_waba_id, company.currency)

    async def export(self, company_id: int, filters: log_reports.LogFilter, *, unmasked: bool) -> Export:
        """Check access and filters and take the company's export slot now; the rows stream later, in runs of
        reads, formatted off the event loop (see `export`)."""
        async with self.database.read() as connection:
            company, query = await log_reports.log_query(connection, self.sealer, company_id, filters)
        lines = csv_format.CsvRows(
            show_waba_id=bool(company.show_waba_id),
            currency=company.currency,
            timezone=company.timezone,
            unmasked=unmasked,
        )
        # Nothing that can fail comes between the slot taken and the export that gives it back at its end.
        lease = await self.export_slots.take(company_id)
        page_rows, sealer, database = self.export_page_rows, self.sealer, self.database

        async def read_run(after: log_store.Position | None) -> AsyncIterator[Sequence[log_store.ExportRow]]:
            """Chunks of rows after `after`: streamed from server-side cursors on one connection while a
            stream is free (at most EXPORT_STREAMS_MAX in the process, EXPORT_RUN_ROWS rows a run), else a
            page per short read."""
            if not database.is_sqlite and self._streams < EXPORT_STREAMS_MAX:
                self._streams += 1
                try:
                    async with database.read() as connection:
                        streamed = 0
                        chunks = log_store.export_chunks(
                            connection, company_id, query, after=after, chunk_rows=page_rows
                        )
                        async for rows in chunks:
                            yield rows
                            streamed += len(rows)
                            if streamed >= EXPORT_RUN_ROWS:
                                return
                finally:
                    self._streams -= 1
                return
            while True:
                async with database.read() as connection:
                    rows = await log_store.export_page(connection, company_id, query, after=after, limit=page_rows)
                if rows:
                    yield rows
                if len(rows) < page_rows:
                    return
                after = log_store.export_position(rows[-1])

        def format_page(rows: Sequence[log_store.ExportRow]) -> bytes:
            """In an export thread: the personal data opened and the rows written as CSV text."""
            names = sealer.open_all(map(_NAME_OF, rows))
            phones = sealer.open_all(map(_PHONE_OF, rows))
            return "".join(lines.chunks(ExportPage(rows, names, phones))).encode()

        return Export(
            company_id=company_id,
            show_waba_id=bool(company.show_waba_id),
            currency=company.currency,
            timezone=company.timezone,
            header=lines.header(),
            read_run=read_run,
            format_page=format_page,
            executor=self._format_threads(),
            on_end=lambda: self.export_slots.give_back(company_id, lease),
        )

    async def usage(
        self,
        company_id: int,
        *,
        since: date | datetime | None = None,
        until: date | datetime | None = None,
        waba_id: str | None = None,
    ) -> usage_reports.UsageSeries:
        """Spend and messages per day (company timezone) and per WABA; both ends included; default this cycle."""
        async with self.database.read() as connection:
            company = await company_of(connection, company_id)
            await check_waba(connection, company_id, waba_id)
            first_day, last_day = await usage_reports.usage_period(connection, company, self.clock(), since, until)
            rows = await usage_store.daily_usage(
                connection, company_id=company_id, first_day=first_day, last_day=last_day, waba_id=waba_id
            )
        return usage_reports.UsageSeries(company.currency, usage_reports.usage_days(rows, first_day, last_day))

    async def events(self, company_id: int, *, cursor: str | None, limit: int) -> event_reports.EventPage:
        """The company's events with their delivery state, newest first, keyset-paginated."""
        if not 1 <= limit <= event_reports.EVENT_PAGE_MAX:
            raise BillingError(
                Rejection.INVALID_REQUEST, f"limit is 1..{event_reports.EVENT_PAGE_MAX}", {"field": "limit"}
            )
        after = (
            event_reports.event_position(self.cursors.decode("billing_events", company_id, cursor)) if cursor else None
        )
        async with self.database.read() as connection:
            await company_of(connection, company_id)
            rows = await log_store.event_page(connection, company_id, after=after, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = self.cursors.encode("billing_events", company_id, [last.created_at.isoformat(), last.id])
        return event_reports.EventPage(
            [
                event_reports.EventRow(
                    r.event_id, r.event_type, r.created_at, dict(r.payload), event_reports.delivery_of(r)
                )
                for r in rows
            ],
            next_cursor,
        )

    async def preferences(self, company_id: int) -> dict[str, bool]:
        async with self.database.read() as connection:
            company = await company_of(connection, company_id)
        return {"show_waba_id": bool(company.show_waba_id)}

    async def set_preferences(self, company_id: int, *, show_waba_id: bool) -> dict[str, bool]:
        async with self.database.transaction() as connection:
            await company_of(connection, company_id)
            await company_store.update_company(connection, company_id, show_waba_id=show_waba_id)
        return {"show_waba_id": show_waba_id}
