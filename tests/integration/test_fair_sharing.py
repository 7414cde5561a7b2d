"""One company's exports and reads cannot slow another company's deductions (SPEC section 5), on PostgreSQL.

- the write path has its own connection pool: reads holding every read connection leave deductions theirs;
- another company's deductions keep their latency while one company runs ten slow exports, served by a
  real server over TCP and read slowly by their clients; its eleventh export at once gets 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from tests.api_support import INTERNAL, INTERNAL_HEADERS, PUBLIC, bearer, deduction_body, provision, settings_for
from tests.conftest import provision_demo_pool, service_for, truncate_all
from wabapool.bootstrap import create_app
from wabapool.domain import limits
from wabapool.service import DeductionRequest
from wabapool.storage import database as database_module
from wabapool.storage.database import Database
from wabapool.storage.errors import StorageTimeout

pytestmark = [pytest.mark.postgres]

EXPORTING, OTHER = 1, 2
EXPORTING_WABA, OTHER_WABA = "1001001", "2002002"
EXPORT_ROWS = 12_000  # ~2 MB: more than the pipeline and the sockets hold, so the exports keep working
SLOW_EXPORTS = 10
SAMPLES = 150
# Bytes a slow client reads at a time, and its pause between reads: ~40 KB/s, so a ~1 MB export stays open
# for the whole measurement.
SLOW_READ_BYTES = 4096
SLOW_READ_PAUSE_SECONDS = 0.1
# The bound: p99 during the exports within 3× the idle p99 plus a fixed margin. The margin is set by what the
# test must catch and what it must not: exports on the event loop stalled other companies' deductions for
# 3–11 s (issue 20), while a loaded 2-core CI machine shows p99 hiccups of ~0.4 s with no export at all
# (0.15 s failed there three times, at 424 ms against a 179 ms bound). Half a second separates the two.
LATENCY_FACTOR = 3
LATENCY_MARGIN_SECONDS = 0.5


async def test_reads_holding_every_read_connection_leave_deductions_their_own_pool(postgres_url: str) -> None:
    database = Database(postgres_url, read_pool_wait_seconds=0.5)
    await truncate_all(database)
    service = service_for(database)
    await provision_demo_pool(service, allowance=10**6)
    readers = database_module.POSTGRES_READ_POOL_SIZE + database_module.POSTGRES_READ_MAX_OVERFLOW
    async with contextlib.AsyncExitStack() as held:
        for _ in range(readers):
            await held.enter_async_context(database.read())
        result = await asyncio.wait_for(
            service.deduct(
                DeductionRequest(
                    company_id=1001,
                    billing_code="wa",
                    deduction_code="wa_marketing_id",
                    unique_code="while-reads-hold-the-read-pool",
                    quantity=1,
                    waba_id="102290129340398",
                )
            ),
            timeout=5,
        )
        assert result.amount == 10
        with pytest.raises(StorageTimeout):  # one more read waits for the read pool, then gives up cleanly
            async with database.read():
                pass
    await database.dispose()


# Socket buffers of the test's connections: small, so that a client that reads slowly holds its export open
# (loopback's default buffers take megabytes, a whole test export, before the server ever waits).
SOCKET_BUFFER_BYTES = 16 * 1024


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """The app behind a real uvicorn on a free port, in a thread with its own event loop."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)  # accepted sockets inherit it
    listening.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listening.close()


@pytest.fixture
async def server(postgres_url: str) -> AsyncIterator[tuple[str, Any]]:
    database = Database(postgres_url)
    await truncate_all(database)
    await database.dispose()
    app = create_app(settings_for(postgres_url))
    with serving(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await provision(client, EXPORTING, wabas=(EXPORTING_WABA,), allowance=10**9)
            await provision(client, OTHER, wabas=(OTHER_WABA,), allowance=10**9)
            for start in range(0, EXPORT_ROWS, limits.BATCH_MAX_ITEMS):
                items = [
                    deduction_body(EXPORTING, f"e{index}", waba_id=EXPORTING_WABA, customer_name=f"Customer {index}")
                    for index in range(start, min(start + limits.BATCH_MAX_ITEMS, EXPORT_ROWS))
                ]
                response = await client.post(
                    f"{INTERNAL}/quota-managements/deductions", json={"items": items}, headers=INTERNAL_HEADERS
                )
                assert response.status_code == 200, response.text
        yield url, app.state.context


async def deduction_latencies(client: httpx.AsyncClient, prefix: str) -> list[float]:
    """SAMPLES lone deductions of the other company, one after another; each one's seconds."""
    seconds = []
    for index in range(SAMPLES):
        started = time.perf_counter()
        response = await client.post(
            f"{INTERNAL}/quota-managements/deduction",
            json=deduction_body(OTHER, f"{prefix}{index}", waba_id=OTHER_WABA),
            headers=INTERNAL_HEADERS,
        )
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return seconds


def p99(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=100)[98]


async def open_slow_export(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A download whose client reads its answer slowly: the status line and headers, then little by little."""
    host, port = url.removeprefix("http://").split(":")
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
    client.setblocking(False)
    await asyncio.get_running_loop().sock_connect(client, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=client, limit=SOCKET_BUFFER_BYTES)
    token = bearer(EXPORTING, "owner")["Authorization"]
    writer.write(
        f"GET {PUBLIC}/download_broadcast_deduction HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


async def read_slowly(reader: asyncio.StreamReader, stop: asyncio.Event) -> int:
    total = 0
    while not stop.is_set():
        chunk = await reader.read(SLOW_READ_BYTES)
        if not chunk:
            break
        total += len(chunk)
        await asyncio.sleep(SLOW_READ_PAUSE_SECONDS)  # the slow client is the behaviour under test, not a wait
    return total


async def test_another_company_s_deductions_keep_their_latency_while_one_company_runs_ten_slow_exports(
    server: tuple[str, Any],
) -> None:
    url, context = server
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await deduction_latencies(client, "warm")  # connections and caches warmed, not measured
        idle = await deduction_latencies(client, "idle")
        exports = [await open_slow_export(url) for _ in range(SLOW_EXPORTS)]
        assert all(head.startswith(b"HTTP/1.1 200") for _reader, _writer, head in exports)
        stop = asyncio.Event()
        readers = [asyncio.create_task(read_slowly(reader, stop)) for reader, _writer, _head in exports]
        try:
            refused = await client.get(f"{PUBLIC}/download_broadcast_deduction", headers=bearer(EXPORTING, "admin"))
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "too_many_exports" and refused.headers["retry-after"]
            during = await deduction_latencies(client, "busy")
            # The measurement ran while all ten were open: none had finished.
            assert context.reports.export_slots.running(EXPORTING) == SLOW_EXPORTS
        finally:
            stop.set()
            for _reader, writer, _head in exports:
                writer.close()
            await asyncio.gather(*readers, return_exceptions=True)
    bound = LATENCY_FACTOR * p99(idle) + LATENCY_MARGIN_SECONDS
    assert p99(during) <= bound, (
        f"p99 {p99(during) * 1000:.1f} ms during the exports, idle {p99(idle) * 1000:.1f} ms (bound {bound * 1000:.0f})"
    )
