"""Fair sharing, measured: another company's lone deductions while one company exports, and memory held by
exports nobody reads (issue 20's goals; a benchmark, not a timed test).

On the database `bench.reports` fills (one company with `--big-rows` log rows, 999 small ones), for this
code's server and, alternating, a baseline's (`--baseline-src DIR/src`, e.g. `git archive <commit> src |
tar -x -C DIR`), each `wabapool serve` in turn:

1. idle: SAMPLES lone deductions of another company, one after another: p50 / p99;
2. the same while the big company runs SLOW_EXPORTS downloads whose clients read slowly (4 KB every 0.1 s,
   small socket buffers): p50 / p99, and how many of the downloads were answered 200 and 429;
3. UNREAD_EXPORTS downloads of the big company opened and never read: statuses and the server's RSS.

The public API's rate limits are raised for the run, so that what is measured is the export bounds.
Prints a table; writes JSON to bench/results/.

    python -m bench.fairness [--database-url URL] [--baseline-src DIR/src] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.http_load import _free_port
from bench.reports import API_KEY, BIG_COMPANY, JWT_SECRET, RESULTS, _rss_mib, _serve, _wait_healthy
from wabapool.security import issue_token

console = Console()
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/wabapool_bench_h20fair"
OTHER_COMPANY = 2
OTHER_WABA = f"20{OTHER_COMPANY:013d}"
SAMPLES = 300
SLOW_EXPORTS = 12
UNREAD_EXPORTS = 100
SLOW_READ_BYTES = 4096
SLOW_READ_PAUSE_SECONDS = 0.1
SOCKET_BUFFER_BYTES = 16 * 1024
# Seconds the unread downloads are left open before the server's RSS is read: their pipelines fill meanwhile.
UNREAD_SETTLE_SECONDS = 10
INTERNAL = "/iag/v1"


def _percentiles(seconds: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(seconds, n=100)
    return {"p50_ms": round(statistics.median(seconds) * 1000, 2), "p99_ms": round(cuts[98] * 1000, 2)}


async def _deductions(client: httpx.AsyncClient, prefix: str) -> list[float]:
    seconds = []
    for index in range(SAMPLES):
        body = {
            "company_id": OTHER_COMPANY,
            "billing_code": "wa",
            "deduction_code": "wa_marketing_id",
            "unique_code": f"{prefix}-{index}",
            "quantity": 1,
            "extra_attrs": {"waba_id": OTHER_WABA},
        }
        started = time.perf_counter()
        response = await client.post(f"{INTERNAL}/quota-managements/deduction", json=body)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    return seconds


async def _open_download(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    """A download whose client has small socket buffers; its status code once the headers came."""
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
    client.setblocking(False)
    await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=client, limit=SOCKET_BUFFER_BYTES)
    token = issue_token(company_id=BIG_COMPANY, role="owner", secret=JWT_SECRET, ttl_seconds=3600)
    writer.write(
        b"GET /api/core/v1/download_broadcast_deduction HTTP/1.1\r\nHost: bench\r\n"
        + f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=120)
    return reader, writer, int(head.split(b" ", 2)[1])


async def _read_slowly(reader: asyncio.StreamReader, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if not await reader.read(SLOW_READ_BYTES):
            return
        await asyncio.sleep(SLOW_READ_PAUSE_SECONDS)


def _close(downloads: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, int]]) -> None:
    for _reader, writer, _status in downloads:
        writer.close()


async def _one_server(url: str, source: str | None, label: str) -> dict[str, Any]:
    port = _free_port()
    server = _serve(url, port, source)
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-Api-Key": API_KEY}, timeout=120)
    try:
        await _wait_healthy(client)
        price = await client.put(f"{INTERNAL}/price-list/wa_marketing_id", json={"unit_price": 100})
        price.raise_for_status()
        stamp = f"{label}-{time.time_ns()}"
        await _deductions(client, f"warm-{stamp}")
        idle = await _deductions(client, f"idle-{stamp}")
        slow = [await _open_download(port) for _ in range(SLOW_EXPORTS)]
        stop = asyncio.Event()
        readers = [asyncio.create_task(_read_slowly(reader, stop)) for reader, _writer, status in slow if status == 200]
        during = await _deductions(client, f"busy-{stamp}")
        stop.set()
        await asyncio.gather(*readers, return_exceptions=True)
        _close(slow)
        await asyncio.sleep(2)  # the closed downloads end
        rss_before = _rss_mib(server.pid)
        unread = [await _open_download(port) for _ in range(UNREAD_EXPORTS)]
        await asyncio.sleep(UNREAD_SETTLE_SECONDS)
        rss_unread = _rss_mib(server.pid)
        _close(unread)
        return {
            "idle": _percentiles(idle),
            "during_slow_exports": _percentiles(during),
            "p99_ratio": round(_percentiles(during)["p99_ms"] / _percentiles(idle)["p99_ms"], 2),
            "slow_exports_status": {str(code): [s for _r, _w, s in slow].count(code) for code in (200, 429)},
            "unread_exports_status": {str(code): [s for _r, _w, s in unread].count(code) for code in (200, 429, 503)},
            "rss_before_unread_mib": round(rss_before, 1),
            "rss_with_unread_mib": round(rss_unread, 1),
        }
    finally:
        await client.aclose()
        server.terminate()
        with contextlib.suppress(Exception):
            server.wait(timeout=30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL, help="a database `bench.reports` filled")
    parser.add_argument("--baseline-src", help="a source tree (its src/) to compare with")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    # The export bounds are what is measured: the rate limits out of the way.
    os.environ.update({"WABAPOOL_RATE_COMPANY_BURST": "100000", "WABAPOOL_RATE_COMPANY_PER_SECOND": "100000"})
    os.environ.update({"WABAPOOL_RATE_TOKEN_BURST": "100000", "WABAPOOL_RATE_TOKEN_PER_SECOND": "100000"})
    sources = {"this": None} | ({"baseline": args.baseline_src} if args.baseline_src else {})
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
    for round_index in range(args.rounds):
        order = list(sources) if round_index % 2 == 0 else list(reversed(sources))
        for name in order:
            runs[name].append(figures := await _one_server(args.database_url, sources[name], name))
            console.print(f"round {round_index + 1} {name}: {figures}")
    table = Table(title="another company's lone deduction while one company exports; memory of unread exports")
    for column in ("server", "idle p50/p99 ms", "during p50/p99 ms", "p99 ×", "slow 200/429", "unread 200/429/503"):
        table.add_column(column)
    table.add_column("RSS before → 100 unread (MiB)")
    for name, figures_list in runs.items():
        for figures in figures_list:
            idle, during = figures["idle"], figures["during_slow_exports"]
            slow, unread = figures["slow_exports_status"], figures["unread_exports_status"]
            table.add_row(
                name,
                f"{idle['p50_ms']} / {idle['p99_ms']}",
                f"{during['p50_ms']} / {during['p99_ms']}",
                str(figures["p99_ratio"]),
                f"{slow['200']} / {slow['429']}",
                f"{unread['200']} / {unread['429']} / {unread['503']}",
                f"{figures['rss_before_unread_mib']} → {figures['rss_with_unread_mib']}",
            )
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"fairness-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(runs, indent=2))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
