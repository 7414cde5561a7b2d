"""HTTP load on loopback: the deduction endpoints against the same app's cheapest endpoint.

Starts `wabapool serve` on PostgreSQL (or SQLite) in its own process, provisions companies over the internal
API (as many as the largest `--pools`, each with its own pool and one to three WABAs, several at a time), then
drives each endpoint with `wrk` at 32 and 64 connections. A Lua script gives every request a fresh unique_code
and, in a cell of N pools, the next of the first N companies (and the next of its WABAs), round-robin per wrk
thread. Before the cells, every WABA is charged once and wrk runs a second over every pool (not measured).
Prints a Rich table (one row per endpoint, pools and connections, with the ratio to the first pools
count), writes JSON to bench/results/, and checks reconcile afterwards (every company).

    python -m bench.http_load [--database-url URL] [--connections 32,64] [--pools 1,100] [--seconds 10] [--workers 1]

Needs the Debian package `wrk` (`apt-get install wrk`); benches are run by hand, CI does not install it.
`--workers N` runs `serve --workers N` (with Redis as the shared balance cache).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from bench.http_pools import BenchCompany, bench_companies, provision_companies, write_targets

RESULTS = Path(__file__).parent / "results"
API_KEY = "bench-key-0123456789abcdef"
JWT_SECRET = "bench-secret-0123456789abcdef0123456789"
COMPANY_ID = 777
WABAS = ("105550001112223", "105550001112224", "105550001112225")
REDIS_URL = "redis://127.0.0.1:6379/14"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/wabapool_bench_http"

# wrk threads: each walks the companies on its own, starting half the list apart from the other.
WRK_THREADS = 2
# Before the cells, after every WABA was charged once: a wrk pass over every pool, so no cell (the first pools
# count's, always first) pays for the server's cold start (its connections, each company's first requests).
WARM_UP_SECONDS = 1
# wrk's wait for one answer: far past its default 2 s, which dropped the slow batches (x1000 at 64 connections
# answers in tens of seconds here) from the rate and the latencies without a word.
WRK_TIMEOUT_SECONDS = 120
# After a cell the server finishes the requests wrk left in flight; the next cell starts once it is idle: under
# IDLE_CPU_SHARE of a core over IDLE_WINDOW_SECONDS, giving up after IDLE_WAIT_MAX_SECONDS.
IDLE_CPU_SHARE = 0.1
IDLE_WINDOW_SECONDS = 0.5
IDLE_WAIT_MAX_SECONDS = 300

DEDUCTION_LUA = r"""
local counter = 0
local start = 0
local thread_id = 0
local threads = {}
local targets = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  thread_id = tid
  run_id = args[1]
  batch = tonumber(args[2])
  for line in io.lines(args[3]) do
    local fields = {}
    for word in line:gmatch("%S+") do table.insert(fields, word) end
    local company = table.remove(fields, 1)
    table.insert(targets, {company = company, wabas = fields})
  end
  start = (thread_id - 1) * math.floor(#targets / tonumber(args[4]))
end
local function item()
  counter = counter + 1
  local turn = start + counter
  local target = targets[turn % #targets + 1]
  local waba = target.wabas[math.floor(turn / #targets) % #target.wabas + 1]
  return string.format(
    '{"company_id":%s,"billing_code":"wa","deduction_code":"wa_marketing_id","unique_code":"%s-%d-%d",'
    .. '"quantity":1,"extra_attrs":{"waba_id":"%s","broadcast_id":"bench","phone_number":"+6281234567890"}}',
    target.company, run_id, thread_id, counter, waba)
end
request = function()
  if batch == 0 then
    return wrk.format("POST", "/iag/v1/quota-managements/deduction", wrk.headers, item())
  end
  local items = {}
  for i = 1, batch do items[i] = item() end
  return wrk.format("POST", "/iag/v1/quota-managements/deductions", wrk.headers,
                    '{"items":[' .. table.concat(items, ",") .. ']}')
end
"""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _prepare_database(url: str) -> None:
    if url.startswith("postgresql"):
        import asyncpg

        name = url.rsplit("/", 1)[1]
        admin = await asyncpg.connect(url.rsplit("/", 1)[0] + "/test")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
    from wabapool.storage.migrate import upgrade

    upgrade(url)


def _start_server(url: str, port: int, log_path: Path, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WABAPOOL_DATABASE_URL": url,
        "WABAPOOL_API_KEYS": f"bench:{API_KEY}",
        "WABAPOOL_JWT_SECRET": JWT_SECRET,
        # serve refuses to start without PII keys; a fresh random key per run (the bench database is throwaway).
        "WABAPOOL_PII_KEYS": os.environ.get("WABAPOOL_PII_KEYS")
        or "bench:" + base64.b64encode(os.urandom(32)).decode(),
        "WABAPOOL_LOG_LEVEL": os.environ.get("WABAPOOL_LOG_LEVEL", "INFO"),
    }
    if workers > 1:
        env["WABAPOOL_REDIS_URL"] = os.environ.get("WABAPOOL_REDIS_URL", REDIS_URL)
    command = [sys.executable, "-m", "wabapool.cli.main", "serve", "--port", str(port), "--workers", str(workers)]
    return subprocess.Popen(command, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)


async def _provision(base: str, companies: list[BenchCompany]) -> float:
    """Once the server answers: the companies and the price; returns the seconds the companies took."""
    headers = {"X-Api-Key": API_KEY}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
        for _ in range(100):
            try:
                if (await client.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        package = {"allowance": 10**13, "postpaid_limit": 0, "cycle_anchor_day": 1}
        started = time.monotonic()
        await provision_companies(client, companies, package=package)
        provisioned_s = time.monotonic() - started
        (
            await client.put(
                "/iag/v1/price-list/wa_marketing_id",
                json={"unit_price": 68_000, "effective_from": "2025-07-01T00:00:00Z"},
            )
        ).raise_for_status()
        return provisioned_s


def _wrk(base: str, path: str, *, connections: int, seconds: int, script: Path | None, args: list[str]) -> dict:
    command = [
        "wrk",
        f"-t{WRK_THREADS}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={WRK_TIMEOUT_SECONDS}s",
        "--latency",
        "-H",
        f"X-Api-Key: {API_KEY}",
        "-H",
        "Content-Type: application/json",
    ]
    if script is not None:
        command += ["-s", str(script)]
    command.append(base + path)
    if args:
        command += ["--", *args]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return _parse_wrk(output)


def _seconds(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def _parse_wrk(output: str) -> dict:
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _seconds(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    timeouts = re.search(r"timeout (\d+)", socket_errors.group(1)) if socket_errors else None
    return {
        "requests": requests,
        "requests_per_second": rps,
        "p50_ms": p50 * 1000,
        "p99_ms": p99 * 1000,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
        "timeouts": int(timeouts.group(1)) if timeouts else 0,
    }


async def _reconcile(url: str) -> tuple[bool, int, int, list[str]]:
    """Reconcile over every company: ok, the deductions and the companies it checked, the first violations."""
    from wabapool.service.reconcile import reconcile
    from wabapool.storage.database import Database

    database = Database(url)
    try:
        report = await reconcile(database)
    finally:
        await database.dispose()
    return report.ok, report.checks.get("deductions", 0), report.checks.get("companies", 0), report.violations[:5]


async def _charge_every_waba(base: str, companies: list[BenchCompany]) -> None:
    """One deduction on every WABA of every company, in batches of the most items a request takes."""
    from wabapool.domain.limits import BATCH_MAX_ITEMS

    items = [
        {
            "company_id": company.company_id,
            "billing_code": "wa",
            "deduction_code": "wa_marketing_id",
            "unique_code": f"prewarm-{company.company_id}-{waba_id}",
            "quantity": 1,
            "extra_attrs": {"waba_id": waba_id, "broadcast_id": "bench", "phone_number": "+6281234567890"},
        }
        for company in companies
        for waba_id in company.waba_ids
    ]
    async with httpx.AsyncClient(base_url=base, headers={"X-Api-Key": API_KEY}, timeout=60) as client:
        for start in range(0, len(items), BATCH_MAX_ITEMS):
            batch = {"items": items[start : start + BATCH_MAX_ITEMS]}
            (await client.post("/iag/v1/quota-managements/deductions", json=batch)).raise_for_status()


def _warm_up(served: _Served, connections: int) -> None:
    """Every WABA charged once, then WARM_UP_SECONDS of wrk over every pool; none of it is measured."""
    asyncio.run(_charge_every_waba(served.base, served.companies))
    _wrk(
        served.base,
        "/",
        connections=connections,
        seconds=WARM_UP_SECONDS,
        script=served.script,
        args=served.script_args("warm", batch=0, pools=len(served.companies)),
    )


async def _companies_charged(url: str, run_id: str) -> int:
    """Companies with at least one of the cells' deductions: the spread reached them."""
    from sqlalchemy import distinct, func, select

    from wabapool.storage.database import Database
    from wabapool.storage.tables import deduction_requests

    database = Database(url)
    try:
        async with database.read() as connection:
            statement = select(func.count(distinct(deduction_requests.c.company_id))).where(
                deduction_requests.c.unique_code.like(f"{run_id}b%")
            )
            return int((await connection.execute(statement)).scalar_one())
    finally:
        await database.dispose()


def _rss_kib(pid: int) -> int:
    """Resident memory of the server: the process and its workers."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1])
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        total += sum(_rss_kib(int(child)) for child in children)
    return total


def _cpu_seconds(pid: int) -> float:
    """CPU time of the server so far: the process and its workers."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += sum(_cpu_seconds(int(child)) for child in (task / "children").read_text().split())
    return total


def _drained(pid: int) -> float:
    """Wait until the server is idle (the requests wrk abandoned answered); returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < IDLE_WAIT_MAX_SECONDS:
        before = _cpu_seconds(pid)
        time.sleep(IDLE_WINDOW_SECONDS)
        if _cpu_seconds(pid) - before < IDLE_CPU_SHARE * IDLE_WINDOW_SECONDS:
            break
    return time.monotonic() - started


@dataclass(frozen=True, slots=True)
class _Served:
    base: str
    script: Path
    server: subprocess.Popen[bytes]
    targets: dict[int, Path]  # pools -> the wrk script's targets file for the first that many companies
    provisioning_s: float
    companies: list[BenchCompany]

    def script_args(self, run_id: str, *, batch: int, pools: int) -> list[str]:
        """The Lua script's arguments: unique_code prefix, items per request (0: the single endpoint), targets."""
        return [run_id, str(batch), str(self.targets[pools]), str(WRK_THREADS)]


@contextlib.contextmanager
def _served(url: str, workers: int = 1, pools: tuple[int, ...] = (1,)) -> Iterator[_Served]:
    """A fresh database, a server on it with max(pools) companies provisioned, and the wrk script; stopped on exit."""
    asyncio.run(_prepare_database(url))
    base = f"http://127.0.0.1:{_free_port()}"
    workdir = Path(tempfile.mkdtemp(prefix="wabapool-http-"))
    script = workdir / "deduct.lua"
    script.write_text(DEDUCTION_LUA)
    companies = bench_companies(max(pools), first_company_id=COMPANY_ID, first_waba_ids=WABAS)
    targets = {count: write_targets(workdir / f"targets-{count}.txt", companies[:count]) for count in pools}
    server = _start_server(url, int(base.rsplit(":", 1)[1]), workdir / "server.log", workers)
    try:
        provisioning_s = asyncio.run(_provision(base, companies))
        yield _Served(base, script, server, targets, provisioning_s, companies)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def soak(url: str, connections: int, seconds: int, console: Console) -> dict:
    """The single-deduction endpoint under load for `seconds`, sampling the server's RSS every slice."""
    samples: list[dict] = []
    with _served(url) as served:
        slice_seconds = 30
        run_id = f"soak{int(time.time())}"
        samples.append({"elapsed_s": 0, "rss_mib": _rss_kib(served.server.pid) / 1024})
        for index in range(max(seconds // slice_seconds, 1)):
            figures = _wrk(
                served.base,
                "/",
                connections=connections,
                seconds=slice_seconds,
                script=served.script,
                args=served.script_args(f"{run_id}-{index}", batch=0, pools=1),
            )
            samples.append(
                {"elapsed_s": (index + 1) * slice_seconds, "rss_mib": _rss_kib(served.server.pid) / 1024, **figures}
            )
            console.print(
                f"{samples[-1]['elapsed_s']:>4} s  RSS {samples[-1]['rss_mib']:.0f} MiB  "
                f"{figures['requests_per_second']:,.0f} req/s  p99 {figures['p99_ms']:.1f} ms"
            )
    ok, deductions, _, violations = asyncio.run(_reconcile(url))
    console.print(f"reconcile: {'ok' if ok else 'FAILED'} ({deductions} deductions) {violations}")
    return {
        "soak_seconds": seconds,
        "connections": connections,
        "samples": samples,
        "reconcile_ok": ok,
        "database": url.split("://")[0],
        "measured_at": datetime.now(UTC).isoformat(),
    }


def _deduction_cell(served: _Served, run_id: str, *, connections: int, seconds: int, batch: int, pools: int) -> dict:
    """One cell: the single endpoint (batch 0) or the batch endpoint, spread over the first `pools` companies."""
    figures = _wrk(
        served.base,
        "/",
        connections=connections,
        seconds=seconds,
        script=served.script,
        args=served.script_args(f"{run_id}b{batch}p{pools}c{connections}", batch=batch, pools=pools),
    )
    endpoint = f"POST deductions x{batch}" if batch else "POST deduction"
    return {
        "endpoint": endpoint,
        "pools": pools,
        "connections": connections,
        "items_per_request": batch or 1,
        **figures,
        "drain_seconds": round(_drained(served.server.pid), 1),
    }


def _add_ratios(rows: list[dict], base_pools: int) -> None:
    """Each deduction row: its rate over the same endpoint's at `base_pools` pools and the same connections."""
    base = {(row["endpoint"], row["connections"]): row for row in rows if row["pools"] == base_pools}
    for row in rows:
        same = base.get((row["endpoint"], row["connections"]))
        if row["pools"] is not None and row["pools"] != base_pools and same and same["requests_per_second"]:
            row["ratio_to_base_pools"] = row["requests_per_second"] / same["requests_per_second"]


def run(
    url: str,
    connections: list[int],
    seconds: int,
    batch_sizes: list[int],
    console: Console,
    *,
    workers: int = 1,
    pools: tuple[int, ...] = (1,),
) -> dict:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    rows: list[dict] = []
    with _served(url, workers, pools) as served:
        console.print(f"{max(pools):,} companies provisioned in {served.provisioning_s:.1f} s")
        rss_start = _rss_kib(served.server.pid)
        _warm_up(served, max(connections))
        _drained(served.server.pid)
        run_id = f"r{int(time.time())}"
        for count in connections:
            cheapest = _wrk(served.base, "/healthz", connections=count, seconds=seconds, script=None, args=[])
            rows.append({"endpoint": "GET /healthz", "pools": None, "connections": count, "items_per_request": 0})
            rows[-1].update(cheapest, drain_seconds=round(_drained(served.server.pid), 1))
            # The pools counts of one endpoint run back to back, so their ratio sees the same machine.
            for batch in [0, *batch_sizes]:
                for pool_count in pools:
                    row = _deduction_cell(
                        served, run_id, connections=count, seconds=seconds, batch=batch, pools=pool_count
                    )
                    if batch == 0 and cheapest["requests_per_second"]:
                        row["ratio_to_cheapest"] = row["requests_per_second"] / cheapest["requests_per_second"]
                    rows.append(row)
        rss_end = _rss_kib(served.server.pid)
    _add_ratios(rows, pools[0])
    ok, deductions, companies_checked, violations = asyncio.run(_reconcile(url))
    companies_charged = asyncio.run(_companies_charged(url, run_id))
    result = {
        "database": url.split("://")[0],
        "seconds_per_cell": seconds,
        "workers": workers,
        "pools": list(pools),
        "companies_provisioned": max(pools),
        "provisioning_seconds": round(served.provisioning_s, 2),
        "rows": rows,
        "reconcile_ok": ok,
        "deductions_in_ledger": deductions,
        "companies_reconciled": companies_checked,
        "companies_charged": companies_charged,
        "violations": violations,
        "server_rss_kib": {"start": rss_start, "end": rss_end},
        "measured_at": datetime.now(UTC).isoformat(),
    }
    _print(result, console)
    return result


def _print(result: dict, console: Console) -> None:
    table = Table(
        title=f"HTTP load on {result['database']}, {result['workers']} server worker(s) "
        f"({result['seconds_per_cell']} s per cell, wrk -t{WRK_THREADS})"
    )
    base_pools = result["pools"][0]
    columns = ("endpoint", "pools", "conns", "req/s", "items/s", "p50 ms", "p99 ms", "non-2xx", "timeouts")
    columns += ("drain s", "vs /healthz", f"vs {base_pools} pool{'s' if base_pools > 1 else ''}")
    for column in columns:
        table.add_column(column, justify="right")
    for row in result["rows"]:
        items = row["requests_per_second"] * row["items_per_request"] if row["items_per_request"] else None
        answered = row["requests"] > 0
        ratio = row.get("ratio_to_cheapest")
        spread = row.get("ratio_to_base_pools")
        table.add_row(
            row["endpoint"],
            "" if row["pools"] is None else f"{row['pools']:,}",
            str(row["connections"]),
            f"{row['requests_per_second']:,.0f}",
            f"{items:,.0f}" if items else "",
            f"{row['p50_ms']:.1f}" if answered else "-",
            f"{row['p99_ms']:.1f}" if answered else "-",
            str(row["non_2xx"]),
            str(row["timeouts"]),
            f"{row['drain_seconds']:.1f}",
            f"{ratio:.0%}" if ratio else "",
            f"{spread:.2f}×" if spread else "",
        )
    console.print(table)
    console.print(
        f"reconcile: {'ok' if result['reconcile_ok'] else 'FAILED'} "
        f"({result['companies_reconciled']:,} companies, {result['deductions_in_ledger']:,} deductions; "
        f"{result['companies_charged']:,} of the {result['companies_provisioned']:,} provisioned charged by the cells) "
        f"{result['violations']}"
    )
    rss = result["server_rss_kib"]
    console.print(f"server RSS: {rss['start'] / 1024:.0f} MiB at start, {rss['end'] / 1024:.0f} MiB at end")


def _counts(text: str, option: str) -> list[int]:
    counts = [int(item) for item in text.split(",") if item]
    if any(count < 1 for count in counts):
        raise SystemExit(f"{option}: every count must be at least 1, not {text!r}")
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("WABAPOOL_DATABASE_URL", DEFAULT_PG))
    parser.add_argument("--connections", default="32,64")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--batch-sizes", default="100,1000")
    parser.add_argument(
        "--pools", default="1", help="Companies the deductions spread over, per cell (1,100: both, with their ratio)."
    )
    parser.add_argument("--workers", type=int, default=1, help="Server processes (above 1: Redis as the shared cache).")
    parser.add_argument("--soak", type=int, default=0, help="Instead: N seconds on the single endpoint, RSS sampled.")
    args = parser.parse_args(argv)
    console = Console()
    if args.soak:
        result = soak(args.database_url, int(args.connections.split(",")[-1]), args.soak, console)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(json.dumps(result, indent=2))
        raise SystemExit(0 if result["reconcile_ok"] else 1)
    result = run(
        args.database_url,
        _counts(args.connections, "--connections"),
        args.seconds,
        _counts(args.batch_sizes, "--batch-sizes"),
        console,
        workers=args.workers,
        pools=tuple(dict.fromkeys(_counts(args.pools, "--pools"))) or (1,),
    )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"http_load-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {path}")
    if not result["reconcile_ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
