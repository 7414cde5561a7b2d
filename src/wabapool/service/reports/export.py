"""The CSV download: a pipeline that keeps every export inside its bounds, and the limit on exports at once.

What one export holds, and its bound (the constants are in `domain/limits.py`, the streams' below):

- a slot of its company (`exports_per_company`) and of the process (`EXPORTS_OPEN_MAX`), taken before the
  first byte and given back when both the download and its pipeline are over: past either,
  `too_many_exports` (429 with Retry-After);
- event-loop time: only the awaits of its page reads; opening the personal data and formatting the rows run
  in a thread pool of `EXPORT_FORMAT_THREADS` shared by every export of the process, so ten exports cost
  the loop no more than one, and a deduction's turn on the loop never waits behind a page being formatted;
- a database connection from the read pool (never the write pool): while its client keeps up and one of
  the process's `EXPORT_STREAMS_MAX` streams is free, for a run of up to `EXPORT_RUN_ROWS` rows read
  from server-side cursors (one statement per run, not per page); the moment its client falls behind, the
  run ends and the connection goes back before the export waits. Otherwise one page's read at a time;
- memory: one page of rows while it is read and formatted, then only its text: `EXPORT_QUEUE_PAGES` formatted
  pages wait in a bounded queue for the response. A client that stops reading fills the queue and the
  pipeline stops with it (back-pressure), so an export never holds more than a few pages, however slow its
  reader, and never reads the rest of the table into memory;
- bytes: at most `EXPORT_BYTES_MAX`; past it the stream is cut without its final chunk, so no client takes
  a truncated file for a whole one.

A read is never cancelled half way (the driver would break its connection): when the download closes, the
pipeline finishes the step it is in, sees the close, and ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.limits import (
    EXPORT_BYTES_MAX,
    EXPORT_FORMAT_THREADS,
    EXPORT_QUEUE_PAGES,
    EXPORT_RETRY_AFTER_SECONDS,
)
from wabapool.storage import logs as log_store

Rows = Sequence[log_store.ExportRow]
# A run of reads from a position: chunks of rows one after another (see `Reports.export`), closed early when
# the client falls behind.
RunReader = Callable[[log_store.Position | None], AsyncIterator[Rows]]
PageFormatter = Callable[[Rows], bytes]

# Export runs streaming from server-side cursors at once in one process, each holding a read connection for
# up to EXPORT_RUN_ROWS rows while its client keeps up: as many as the format threads can keep busy (more
# would not export faster), few enough that the read pool (10 + 10) always has connections for everyone
# else. Every other run reads a page per short read.
EXPORT_STREAMS_MAX = EXPORT_FORMAT_THREADS
# Rows of one streaming run (~2 s at 100k rows/s): then its connection, its snapshot and its stream are given
# back, and its export goes on in a new run (a stream of its own again when one is free).
EXPORT_RUN_ROWS = 200_000

# Pipelines still running (a closed download's may be finishing its read): held here, the event loop keeps
# only a weak reference to a task. At most EXPORTS_OPEN_MAX, each ending within one page's read.
_RUNNING: set[asyncio.Task[None]] = set()


@dataclass(frozen=True, slots=True)
class ExportPage:
    """A page of the CSV export: storage rows (`log_store.EXPORT_COLUMNS`, read by position) and, beside them,
    their personal data opened. Columns of plain values, not a LogRow each: the export formats a million rows."""

    rows: Sequence[log_store.ExportRow]
    customer_names: list[str | None]
    phone_numbers: list[str | None]


class CompanyLeases(Protocol):
    """The company's export slots shared by every process of the deployment (`export_leases.py`: Redis)."""

    renew_seconds: float

    async def take(self, company_id: int, limit: int) -> str | None:
        """A lease on one of `limit` slots (its id), None when all are held, "" when granted without one."""
        ...

    async def renew(self, company_id: int, lease: str) -> None: ...

    async def give_back(self, company_id: int, lease: str) -> None: ...

    async def close(self) -> None: ...


class ExportSlots:
    """Exports running at once, per company and in all, in this process; with `leases`, the company's limit
    holds across every process too (a lease per export, renewed while it runs, given back at its end)."""

    def __init__(self, *, per_company: int, total: int, leases: CompanyLeases | None = None) -> None:
        self.per_company = per_company
        self.total = total
        self.leases = leases
        self._running: Counter[int] = Counter()
        # Leases held by this process's exports, each with the task that renews it; and the give-backs under
        # way (the event loop keeps only weak references to tasks).
        self._renewals: dict[str, asyncio.Task[None]] = {}
        self._giving_back: set[asyncio.Task[None]] = set()

    def running(self, company_id: int | None = None) -> int:
        """Exports running now in this process: the company's, or every company's."""
        return self._running[company_id] if company_id is not None else self._running.total()

    async def take(self, company_id: int) -> str:
        """A slot for one more export of the company, or `too_many_exports` (nothing started); the lease it
        holds across processes ("" without one), to give back."""
        if self._running[company_id] >= self.per_company:
            raise _too_many_of_company(self.per_company)
        if self._running.total() >= self.total:
            raise _too_many("the server runs as many exports as it can; retry shortly", "server")
        self._running[company_id] += 1  # counted before the wait on Redis: this process's takes see it
        if self.leases is None:
            return ""
        try:
            lease = await self.leases.take(company_id, self.per_company)
        except BaseException:
            self._count_off(company_id)
            raise
        if lease is None:
            self._count_off(company_id)
            raise _too_many_of_company(self.per_company)
        if lease:
            self._renewals[lease] = asyncio.ensure_future(self._renew(company_id, lease))
        return lease

    def give_back(self, company_id: int, lease: str = "") -> None:
        """The export is over: its slot here, and its lease (in the background: an end cannot wait on Redis)."""
        self._count_off(company_id)
        renewal = self._renewals.pop(lease, None)
        if renewal is not None:
            renewal.cancel()
        if lease and self.leases is not None:
            task = asyncio.ensure_future(self.leases.give_back(company_id, lease))
            self._giving_back.add(task)
            task.add_done_callback(self._giving_back.discard)

    async def close(self) -> None:
        """At shutdown: the renewals stop (the leases expire), the give-backs under way finish."""
        for renewal in self._renewals.values():
            renewal.cancel()
        self._renewals.clear()
        if self._giving_back:
            await asyncio.wait(set(self._giving_back))
        if self.leases is not None:
            await self.leases.close()

    def _count_off(self, company_id: int) -> None:
        self._running[company_id] -= 1
        if self._running[company_id] <= 0:
            del self._running[company_id]

    async def _renew(self, company_id: int, lease: str) -> None:
        if self.leases is None:
            return
        while True:
            await asyncio.sleep(self.leases.renew_seconds)
            await self.leases.renew(company_id, lease)


def _too_many_of_company(per_company: int) -> BillingError:
    return _too_many(f"this company runs {per_company} exports at once; retry when one ends", "company")


def _too_many(message: str, scope: str) -> BillingError:
    return BillingError(
        Rejection.TOO_MANY_EXPORTS, message, {"scope": scope, "retry_after_seconds": EXPORT_RETRY_AFTER_SECONDS}
    )


class ExportTooLarge(Exception):
    """The export passed EXPORT_BYTES_MAX: its stream is cut (see the module docstring)."""


class Export:
    """One download: what it needs before its first byte, and its bytes, from a pipeline started on first read."""

    def __init__(
        self,
        *,
        company_id: int,
        show_waba_id: bool,
        currency: str,
        timezone: str,
        header: str,
        read_run: RunReader,
        format_page: PageFormatter,
        executor: Executor,
        on_end: Callable[[], None],
        bytes_max: int = EXPORT_BYTES_MAX,
    ) -> None:
        self.company_id = company_id
        self.show_waba_id = show_waba_id
        self.currency = currency
        self.timezone = timezone
        self._header = header.encode()
        self._read_run = read_run
        self._format_page = format_page
        self._executor = executor
        self._on_end = on_end
        self._bytes_max = bytes_max
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=EXPORT_QUEUE_PAGES)
        self._closed = asyncio.Event()
        self._pipeline: asyncio.Task[None] | None = None
        self._ended = False

    async def body(self) -> AsyncIterator[bytes]:
        """The file's bytes, a page at a time; waits while the pipeline reads and formats the next one."""
        if self._pipeline is None and not self._closed.is_set():
            self._pipeline = asyncio.ensure_future(self._produce())
            _RUNNING.add(self._pipeline)
            self._pipeline.add_done_callback(_RUNNING.discard)
        try:
            yield self._header
            while True:
                item = await self._queue.get()
                if isinstance(item, BaseException):
                    raise item
                if item is None:  # after the last page
                    return
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """The download is over (finished, failed or dropped): the pipeline ends at its next step, and the
        export's slot is given back once both are over (a download still sending its last pages is running)."""
        self._closed.set()
        if self._pipeline is None or self._pipeline.done():
            self._end()

    @property
    def ended(self) -> bool:
        """Whether the pipeline has ended and given back its slot."""
        return self._ended

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._on_end()

    async def _produce(self) -> None:
        loop = asyncio.get_running_loop()
        written = 0
        after: log_store.Position | None = None
        run: AsyncIterator[Rows] | None = None  # the open run; a new one starts where the last row stands
        fresh = False  # whether the open run has given nothing yet: a new run with no rows ends the export
        ahead: asyncio.Future[Rows | None] | None = None
        rows: Rows | None = None
        try:
            while not self._closed.is_set():
                if rows is None:
                    if run is None:
                        run, fresh = self._read_run(after), True
                    rows = await anext(run, None)
                    if not rows:
                        await _stopped(run, None)
                        run, rows = None, None
                        if fresh:
                            break
                        continue
                    fresh = False
                after = log_store.export_position(rows[-1])
                if run is not None and not self._queue.full():
                    # The client keeps up: the next chunk is read while this one is formatted. One that does
                    # not gets no read ahead, so a stalled export holds no rows, only its pages' text.
                    ahead = asyncio.ensure_future(anext(run, None))
                text = await loop.run_in_executor(self._executor, self._format_page, rows)
                rows = None
                written += len(text)
                if written > self._bytes_max:
                    raise ExportTooLarge(f"the export passed {self._bytes_max} bytes")
                if self._queue.full() and run is not None:
                    # The client is behind: the run ends (its connection back to the pool) before the wait
                    # for room; the chunk read ahead, if any, is kept and the next run starts after it.
                    rows = await ahead if ahead is not None else None
                    ahead = None
                    await _stopped(run, None)
                    run = None
                if not await self._put(text):
                    return
                if ahead is not None:
                    rows, ahead = await ahead, None
                    if not rows:  # the run is over: the next one says whether the export is
                        await _stopped(run, None)
                        run, rows = None, None
            await self._put(None)
        except Exception as exc:  # the response raises it: the stream is cut, never ended as if whole
            await self._put(exc)
        finally:
            # A read in flight is let finish (see the module docstring), its rows dropped; the run is closed.
            await _stopped(run, ahead)
            if self._closed.is_set():  # else the response is still sending: its close gives the slot back
                self._end()

    async def _put(self, item: bytes | BaseException | None) -> bool:
        """Wait for room in the queue (the client reading) or for the download to close; False if it closed."""
        if self._closed.is_set():
            return False
        put = asyncio.ensure_future(self._queue.put(item))
        closed = asyncio.ensure_future(self._closed.wait())
        done, pending = await asyncio.wait({put, closed}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()
        return put in done


async def _stopped(run: AsyncIterator[Rows] | None, ahead: asyncio.Future[Rows | None] | None) -> None:
    """Let a read in flight finish (never cancelled half way), then close the run (its connection back)."""
    if ahead is not None:
        await asyncio.wait([ahead])
        if not ahead.cancelled():
            ahead.exception()
    if run is not None:
        with contextlib.suppress(Exception):
            await run.aclose()  # type: ignore[attr-defined]
