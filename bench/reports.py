"""The read side at size: logs, usage, phone search and the CSV export on 2,000,000 deduction rows.

Fills a PostgreSQL database by COPY (1,000 companies; one of them holds
1,000,000 rows over 5 WABAs, the others share the rest), with sealed names and
phone numbers, one ledger entry per deduction and the daily roll-up, then
starts `wabapool serve` on it and measures over HTTP:

- the WABA-filtered `mcc_logs` first page and a deep page (half way down the
  WABA's rows, through a cursor signed with the same key), p50/p95;
- `usage` for a month, p50/p95; a phone-number search, p50/p95;
- the full CSV of the big company: rows per second and the server's peak RSS;

and prints the query plans (EXPLAIN ANALYZE of the statements the service
runs, captured in-process). Prints a table; writes JSON to bench/results/.

The fill seals 500 names and 100,000 phone numbers once and reuses the sealed
values, where production seals every row afresh (a new nonce each time): a
cache of opened values keyed by the sealed bytes would look fast here and do
nothing in production, so the export keeps none.

    python -m bench.reports [--database-url URL] [--rows 2000000] [--big-rows 1000000] [--reuse]
                            [--csv-only] [--rounds N] [--baseline-src DIR]

`--baseline-src` compares the CSV export with another version of the code: a
second server runs from that source tree (e.g. `git archive <commit> src |
tar -x -C DIR`, then `--baseline-src DIR/src`) on the same database, and the
two downloads alternate, `--rounds` each (the machine is shared and noisy:
side by side is the only fair comparison). `--reuse` measures an existing
fill; `--csv-only` skips the other cases and the plans.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from rich.console import Console
from rich.table import Table

from bench.http_load import _free_port
from wabapool import bootstrap
from wabapool.pii import PiiSealer
from wabapool.security import issue_token
from wabapool.service.cursors import CursorSigner

RESULTS = Path(__file__).parent / "results"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/wabapool_bench_reports"
API_KEY = "bench-key-0123456789abcdef"
JWT_SECRET = "bench-secret-0123456789abcdef0123456789"
# A fixed bench key, so a --reuse run can open what the fill sealed.
PII_KEYS = "bench:" + base64.b64encode(b"bench reports pii key 32 bytes!!").decode()
BIG_COMPANY = 1
COMPANIES = 1_000
BIG_WABAS = tuple(f"10{index}000000000000" for index in range(1, 6))
DAYS = 60
START = datetime(2026, 9, 20, tzinfo=UTC)
PHONE_POOL = 100_000
SEARCHED_PHONE = "+6281200000042"
SAMPLES = 60
console = Console()


def _phone(index: int) -> str:
    return f"+62812{index:08d}"


def _records(company_id: int, wabas: tuple[str, ...], count: int, first_id: int, sealer: PiiSealer) -> list[tuple]:
    """deduction_requests rows in COPY order, oldest first, spread over DAYS days."""
    from wabapool.storage.changes import DEDUCTION_COLUMNS

    assert DEDUCTION_COLUMNS[0] == "id" and DEDUCTION_COLUMNS[-1] == "allocations"
    step = timedelta(days=DAYS) / max(count, 1)
    names = [sealer.seal(f"Customer {index}") for index in range(500)]
    phones = (
        {index: sealer.seal(_phone(index)) for index in range(0, PHONE_POOL, 1)} if company_id == BIG_COMPANY else {}
    )
    hashes = {index: sealer.search_hash(_phone(index)) for index in phones}
    allocation = '[{"credited_to":"wa_balance_initial","quota_type":"initial","amount":1000}]'
    rows = []
    randint = random.Random(company_id).randrange
    for offset in range(count):
        phone_index = randint(PHONE_POOL)
        sealed_phone = phones.get(phone_index)
        created_at = START + step * offset
        rows.append(
            (
                first_id + offset,
                company_id,
                f"c{company_id}-{offset}",
                company_id,  # organization_package_id: only carried, never joined by the reads measured
                wabas[offset % len(wabas)],
                "whatsapp",
                "wa_marketing_id",
                1,
                1000,
                1000,
                "62",
                10**12 - offset * 1000,
                10**12 - (offset + 1) * 1000,
                "wa_balance_initial",
                "0" * 64,
                datetime(2026, 9, 1, tzinfo=UTC),
                "bench",
                f"b{offset // 10_000}",
                f"m{company_id}-{offset}",
                "marketing",
                names[offset % len(names)],
                sealed_phone,
                hashes.get(phone_index),
                created_at,
                allocation,
            )
        )
    return rows


async def _fill(url: str, total_rows: int, big_rows: int) -> dict[str, float]:
    from wabapool.storage.changes import DEDUCTION_COLUMNS
    from wabapool.storage.migrate import upgrade

    admin = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
    name = url.rsplit("/", 1)[1]
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    upgrade(url)
    sealer = PiiSealer(PII_KEYS)
    started = time.perf_counter()
    await _provision(url)
    provisioned = time.perf_counter()
    connection = await asyncpg.connect(url)
    try:
        rows = _records(BIG_COMPANY, BIG_WABAS, big_rows, 1, sealer)
        await connection.copy_records_to_table("deduction_requests", records=rows, columns=DEDUCTION_COLUMNS)
        per_company = (total_rows - big_rows) // (COMPANIES - 1)
        next_id = big_rows + 1
        batch: list[tuple] = []
        for company_id in range(2, COMPANIES + 1):
            batch += _records(company_id, (f"20{company_id:013d}",), per_company, next_id, sealer)
            next_id += per_company
            if len(batch) >= 100_000:
                await connection.copy_records_to_table("deduction_requests", records=batch, columns=DEDUCTION_COLUMNS)
                batch = []
        if batch:
            await connection.copy_records_to_table("deduction_requests", records=batch, columns=DEDUCTION_COLUMNS)
        await connection.execute("SELECT setval('deduction_requests_id_seq', (SELECT max(id) FROM deduction_requests))")
        copied = time.perf_counter()
        await connection.execute(_LEDGER_FROM_DEDUCTIONS)
        await connection.execute(_ROLL_UP)
        await connection.execute("VACUUM ANALYZE")
        finished = time.perf_counter()
        count = await connection.fetchval("SELECT count(*) FROM deduction_requests")
    finally:
        await connection.close()
    return {
        "deduction_rows": count,
        "provision_s": round(provisioned - started, 1),
        "copy_deductions_s": round(copied - provisioned, 1),
        "ledger_rollup_analyze_s": round(finished - copied, 1),
    }


_LEDGER_FROM_DEDUCTIONS = """
INSERT INTO ledger_entries (company_id, organization_package_id, kind, quota_type, amount_minor,
    bucket_before_minor, bucket_after_minor, total_before_minor, total_after_minor, waba_id,
    deduction_request_id, reference, cycle_start, created_at)
SELECT company_id, organization_package_id, 'deduction', 'initial', -amount_minor, value_before_minor,
    value_after_minor, value_before_minor, value_after_minor, waba_id, id, unique_code, cycle_start, created_at
FROM deduction_requests
"""
_ROLL_UP = """
INSERT INTO waba_daily_usage (company_id, waba_id, day, spent_minor, messages)
SELECT d.company_id, d.waba_id, (d.created_at AT TIME ZONE c.timezone)::date, sum(d.amount_minor), sum(d.quantity)
FROM deduction_requests d JOIN companies c ON c.company_id = d.company_id
GROUP BY 1, 2, 3
"""


async def _provision(url: str) -> None:
    """Companies, pools and WABAs through the service (what the reads check and join)."""
    from wabapool.service import CompanyTerms, PackageTerms
    from wabapool.storage.database import Database

    database = Database(url)
    service = bootstrap.billing_service(database, sealer=PiiSealer(PII_KEYS))
    try:
        terms = CompanyTerms(package=PackageTerms(allowance=10**12, postpaid_limit=0, cycle_anchor_day=1))
        for company_id in range(1, COMPANIES + 1):
            await service.provision_company(company_id, terms)
            wabas = BIG_WABAS if company_id == BIG_COMPANY else (f"20{company_id:013d}",)
            for index, waba_id in enumerate(wabas):
                await service.provision_waba(company_id, waba_id, name=f"WABA {index + 1}")
    finally:
        await database.dispose()


def _serve(url: str, port: int, source: str | None = None) -> subprocess.Popen[bytes]:
    """`wabapool serve` on the database; from another source tree when `source` is given."""
    env = {
        **os.environ,
        **({"PYTHONPATH": source} if source else {}),
        "WABAPOOL_DATABASE_URL": url,
        "WABAPOOL_API_KEYS": f"bench:{API_KEY}",
        "WABAPOOL_JWT_SECRET": JWT_SECRET,
        "WABAPOOL_PII_KEYS": PII_KEYS,
        "WABAPOOL_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "wabapool.cli.main", "serve", "--port", str(port), "--no-migrate"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _timed(client: httpx.AsyncClient, path: str, params: dict[str, str]) -> list[float]:
    timings = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        response = await client.get(path, params=params)
        timings.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return timings


def _percentiles(timings: list[float]) -> dict[str, float]:
    ordered = sorted(timings)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 2),
    }


async def _deep_cursor(url: str, waba_id: str, depth: int) -> str:
    """A cursor `depth` rows down the WABA's logs, signed as the server signs them."""
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(
            "SELECT created_at, id FROM deduction_requests WHERE company_id = $1 AND waba_id = $2 "
            "ORDER BY created_at DESC, id DESC OFFSET $3 LIMIT 1",
            BIG_COMPANY,
            waba_id,
            depth,
        )
    finally:
        await connection.close()
    signer = CursorSigner(PiiSealer(PII_KEYS).cursor_key)
    return signer.encode("mcc_logs", BIG_COMPANY, [row["created_at"].isoformat(), 0, row["id"]])


async def _wait_healthy(client: httpx.AsyncClient) -> None:
    for _ in range(300):
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not become healthy in 30 s")


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _download(client: httpx.AsyncClient, server_pid: int) -> dict[str, float]:
    """The whole CSV of the big company: rows, rows per second, and the CPU the server and this client spent."""
    started, server_cpu, client_cpu = time.perf_counter(), _cpu_seconds(server_pid), time.process_time()
    lines = 0
    async with client.stream("GET", "/api/core/v1/download_broadcast_deduction") as response:
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - started
    return {
        "rows": lines - 1,
        "seconds": round(elapsed, 1),
        "rows_per_s": round((lines - 1) / elapsed),
        "server_cpu_s": round(_cpu_seconds(server_pid) - server_cpu, 1),
        "client_cpu_s": round(time.process_time() - client_cpu, 1),
    }


async def _read_cases(client: httpx.AsyncClient, url: str, big_rows: int) -> dict[str, Any]:
    logs = "/api/core/v1/mcc_logs"
    waba = BIG_WABAS[2]
    deep = await _deep_cursor(url, waba, big_rows // len(BIG_WABAS) // 2)
    month = {"from": "2026-10-01", "to": "2026-10-31"}
    cases = {
        "mcc_logs first page (WABA filter)": (logs, {"waba_id": waba, "limit": "50"}),
        "mcc_logs deep page (WABA filter, 100k rows down)": (logs, {"waba_id": waba, "limit": "50", "cursor": deep}),
        "usage, one month": ("/api/core/v1/usage", month),
        "phone number search": (logs, {"phone_number": SEARCHED_PHONE, "limit": "50"}),
    }
    results: dict[str, Any] = {}
    for name, (path, params) in cases.items():
        await _timed(client, path, params)  # warm
        results[name] = _percentiles(await _timed(client, path, params))
    return results


async def _measure(
    url: str, big_rows: int, *, csv_only: bool, rounds: int, baseline_source: str | None
) -> dict[str, Any]:
    """Every case on this code's server; the CSV `rounds` times, alternating with the baseline's when given."""
    token = issue_token(company_id=BIG_COMPANY, role="owner", secret=JWT_SECRET, ttl_seconds=3600)
    headers = {"Authorization": f"Bearer {token}"}
    servers = {"this": _serve(url, port := _free_port())}
    ports = {"this": port}
    if baseline_source:
        servers["baseline"] = _serve(url, port := _free_port(), baseline_source)
        ports["baseline"] = port
    clients = {
        name: httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=600)
        for name, port in ports.items()
    }
    results: dict[str, Any] = {}
    try:
        for client in clients.values():
            await _wait_healthy(client)
        if not csv_only:
            results |= await _read_cases(clients["this"], url, big_rows)
        rss_before = {name: round(_rss_mib(server.pid), 1) for name, server in servers.items()}
        downloads: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for round_index in range(rounds):
            # Alternate which goes first, so neither always follows the other's traffic.
            order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
            for name in order:
                downloads[name].append(figures := await _download(clients[name], servers[name].pid))
                console.print(f"  round {round_index + 1} {name}: {figures}")
        for name, server in servers.items():
            rates = [download["rows_per_s"] for download in downloads[name]]
            # The server's CPU a row: steadier than rows/s on a shared machine (a wait for a core is not in it).
            cpu_per_row = [download["server_cpu_s"] / max(download["rows"], 1) * 1e6 for download in downloads[name]]
            label = "csv, whole big company" + ("" if name == "this" else " (baseline)")
            results[label] = {
                "rows": downloads[name][-1]["rows"],
                "rows_per_s_median": round(statistics.median(rates)),
                "rows_per_s_rounds": rates,
                "server_cpu_us_per_row_median": round(statistics.median(cpu_per_row), 2),
                "server_rss_before_mib": rss_before[name],
                "server_peak_rss_mib": round(_peak_rss_mib(server.pid), 1),
            }
    finally:
        for client in clients.values():
            await client.aclose()
        for server in servers.values():
            server.terminate()
            server.wait(timeout=30)
    return results


async def _plans(url: str, big_rows: int) -> dict[str, str]:
    """EXPLAIN ANALYZE of the statements the service runs, captured from the service itself."""
    from sqlalchemy import event

    from wabapool.service.reports import LogFilter, Reports
    from wabapool.storage.database import Database

    database = Database(url)
    captured: list[tuple[str, Any]] = []

    @event.listens_for(database.read_engine.sync_engine, "before_cursor_execute")
    def capture(_connection: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    reports = Reports(database, PiiSealer(PII_KEYS))
    deep = await _deep_cursor(url, BIG_WABAS[2], big_rows // len(BIG_WABAS) // 2)
    calls = {
        "mcc_logs first page": lambda: reports.logs(
            BIG_COMPANY, LogFilter(waba_id=BIG_WABAS[2]), cursor=None, limit=50
        ),
        "mcc_logs deep page": lambda: reports.logs(BIG_COMPANY, LogFilter(waba_id=BIG_WABAS[2]), cursor=deep, limit=50),
        "phone search": lambda: reports.logs(
            BIG_COMPANY, LogFilter(phone_number=SEARCHED_PHONE), cursor=None, limit=50
        ),
        "usage month": lambda: reports.usage(BIG_COMPANY, since=date(2026, 10, 1), until=date(2026, 10, 31)),
    }
    plans: dict[str, str] = {}
    try:
        for name, call in calls.items():
            captured.clear()
            await call()
            statement, parameters = next(
                (s, p) for s, p in captured if "deduction_requests" in s or "waba_daily_usage" in s
            )
            async with database.engine.connect() as connection:
                result = await connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                plans[name] = "\n".join(row[0] for row in result)
    finally:
        await database.dispose()
    return plans


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="measure an existing filled database")
    parser.add_argument("--csv-only", action="store_true", help="only the CSV export, no other case or plan")
    parser.add_argument("--rounds", type=int, default=1, help="CSV downloads per server (alternating)")
    parser.add_argument("--baseline-src", help="a source tree (its src/) to compare the CSV export with")
    args = parser.parse_args()
    fill = {} if args.reuse else await _fill(args.database_url, args.rows, args.big_rows)
    if fill:
        console.print(f"filled: {fill}")
    results = await _measure(
        args.database_url,
        args.big_rows,
        csv_only=args.csv_only,
        rounds=args.rounds,
        baseline_source=args.baseline_src,
    )
    plans = {} if args.csv_only else await _plans(args.database_url, args.big_rows)
    table = Table(title=f"reports at {args.rows:,} rows ({args.big_rows:,} in one company)")
    table.add_column("case")
    table.add_column("figures")
    for name, figures in results.items():
        table.add_row(name, ", ".join(f"{key} {value}" for key, value in figures.items()))
    console.print(table)
    for name, plan in plans.items():
        console.rule(name)
        console.print(plan, highlight=False, soft_wrap=True)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"reports-{stamp}.json"
    payload = {"rows": args.rows, "big_rows": args.big_rows, "fill": fill, "results": results, "plans": plans}
    path.write_text(json.dumps(payload, indent=2, default=str))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
