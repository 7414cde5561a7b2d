"""Worker benchmark: events/s one `wabapool worker` delivers to a loopback receiver, and latency under load.

Three processes, as in production: the receiver (uvicorn, answers 204 without verifying), one
`wabapool worker` subprocess, and this process raising events. Phase 1 (throughput) inserts a backlog
of events over several companies at once and times how long the worker takes to deliver them all
(one in flight per company: per-company order). Phase 2 (latency) runs deduction senders against the
engine while top-ups raise events, then reads each event's raised → delivered time (created_at to
delivered_at, both stamped by the same machine's clock; delivered_at is written after the answer).
Prints a table and writes bench/results/worker-<timestamp>.json. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select, text

from bench import product
from bench.prepare import ensure_postgres_database, git_state, shown_url
from bench.stats import percentile
from wabapool.service import BillingService, CompanyTerms, DeductionRequest, PackageTerms
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade
from wabapool.storage.tables import metadata, outbox_events

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/wabapool_bench_worker"
RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"
COMPANY_BASE = 900_000
WABA = "5550001"


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The receiver: reads the body, answers 204 (ASGI, run by uvicorn in its own process)."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.worker:receiver_app",
        "--port",
        str(port),
        "--log-level",
        "error",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.1)
    raise RuntimeError("the receiver did not start")


def start_worker(url: str, poll_seconds: float) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WABAPOOL_DATABASE_URL": url,
        "WABAPOOL_PII_KEYS": product.BENCH_PII_KEYS,
        "WABAPOOL_WEBHOOK_ALLOW_PRIVATE": "true",
        "WABAPOOL_WORKER_POLL_SECONDS": str(poll_seconds),
        "WABAPOOL_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "wabapool.cli.main", "worker"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def reset_database(url: str) -> None:
    if url.startswith("postgresql"):
        await ensure_postgres_database(url)
    upgrade(url)
    database = Database(url)
    try:
        async with database.transaction() as connection:
            if database.is_sqlite:
                for table in reversed(metadata.sorted_tables):
                    await connection.execute(table.delete())
            else:
                names = ", ".join(t.name for t in reversed(metadata.sorted_tables))
                await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        await database.dispose()


async def provision(service: BillingService, companies: int, receiver_url: str) -> None:
    for index in range(companies):
        company_id = COMPANY_BASE + index
        await service.provision_company(company_id, CompanyTerms(package=PackageTerms(allowance=10**12)))
        await service.provision_waba(company_id, f"{WABA}{index}", name="bench")
        await service.set_webhook(company_id, url=receiver_url)
    await service.set_price("wa_marketing_id", unit_price_minor=100, effective_from=datetime(2025, 1, 1, tzinfo=UTC))


async def wait_delivered(database: Database, expected: int, deadline_seconds: float) -> float:
    """Seconds until `expected` events are delivered (polling every 20 ms)."""
    started = time.perf_counter()
    while time.perf_counter() - started < deadline_seconds:
        async with database.read() as connection:
            done = (
                await connection.execute(
                    select(func.count()).select_from(outbox_events).where(outbox_events.c.delivered_at.isnot(None))
                )
            ).scalar()
        if done >= expected:
            return time.perf_counter() - started
        await asyncio.sleep(0.02)
    raise RuntimeError(f"only part of {expected} events delivered in {deadline_seconds} s")


async def throughput(database: Database, *, companies: int, events: int) -> dict[str, Any]:
    """A backlog of `events` over `companies`, inserted in one transaction; time to deliver all."""
    now = datetime.now(UTC)
    rows = [
        {
            "event_id": str(uuid.uuid4()),
            "company_id": COMPANY_BASE + index % companies,
            "event_type": "balance_topped_up",
            "dedup_key": None,
            "payload": {"total": index, "available": index, "cycle": "bench"},
            "created_at": now,
            "attempts": 0,
            "next_attempt_at": now,
        }
        for index in range(events)
    ]
    async with database.transaction() as connection:
        await connection.execute(insert(outbox_events), rows)
    seconds = await wait_delivered(database, events, 600)
    return {"companies": companies, "events": events, "seconds": seconds, "events_per_second": events / seconds}


async def latency_under_load(
    service: BillingService,
    database: Database,
    *,
    companies: int,
    senders: int,
    seconds: float,
    top_ups_per_second: int,
) -> dict[str, Any]:
    """Deduction senders for `seconds`, top-ups raising events meanwhile; raised → delivered of those events."""
    async with database.read() as connection:
        first_id = (await connection.execute(select(func.coalesce(func.max(outbox_events.c.id), 0)))).scalar()
    stop = time.perf_counter() + seconds
    deductions = 0

    async def sender(number: int) -> None:
        nonlocal deductions
        index = 0
        while time.perf_counter() < stop:
            company = number % companies
            await service.deduct(
                DeductionRequest(
                    company_id=COMPANY_BASE + company,
                    billing_code="bench",
                    deduction_code="wa_marketing_id",
                    unique_code=f"s{number}-{index}-{uuid.uuid4().hex[:8]}",
                    quantity=1,
                    waba_id=f"{WABA}{company}",
                )
            )
            deductions += 1
            index += 1

    async def funder() -> int:
        raised = 0
        while time.perf_counter() < stop:
            company = random.randrange(companies)
            await service.top_up(COMPANY_BASE + company, amount=100, payment_reference=f"t-{uuid.uuid4().hex}")
            raised += 1
            await asyncio.sleep(1 / top_ups_per_second)
        return raised

    results = await asyncio.gather(*(sender(n) for n in range(senders)), funder())
    raised = results[-1]
    async with database.read() as connection:
        expected = (await connection.execute(select(func.count()).select_from(outbox_events))).scalar()
    await wait_delivered(database, expected, 120)
    async with database.read() as connection:
        rows = list(
            await connection.execute(
                select(outbox_events.c.created_at, outbox_events.c.delivered_at).where(outbox_events.c.id > first_id)
            )
        )
    latencies_ms = sorted((r.delivered_at - r.created_at).total_seconds() * 1000 for r in rows)
    return {
        "senders": senders,
        "seconds": seconds,
        "deductions_per_second": deductions / seconds,
        "events": raised,
        "latency_ms_p50": percentile(latencies_ms, 50),
        "latency_ms_p99": percentile(latencies_ms, 99),
        "latency_ms_max": latencies_ms[-1],
    }


async def run(arguments: argparse.Namespace, receiver_url: str) -> dict[str, Any]:
    await reset_database(arguments.database_url)
    database = Database(arguments.database_url)
    service = product.service(database)
    worker = None
    try:
        await provision(service, max(arguments.companies), receiver_url)
        worker = start_worker(arguments.database_url, arguments.poll_seconds)
        await asyncio.sleep(2)  # the worker is up and listening
        phases = []
        for companies in arguments.companies:
            async with database.transaction() as connection:
                await connection.execute(outbox_events.delete())
            phases.append(await throughput(database, companies=companies, events=arguments.events))
        latency = await latency_under_load(
            service,
            database,
            companies=max(arguments.companies),
            senders=arguments.senders,
            seconds=arguments.seconds,
            top_ups_per_second=arguments.top_ups_per_second,
        )
        return {"throughput": phases, "latency": latency}
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(20)
        await database.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("WABAPOOL_DATABASE_URL") or DEFAULT_DATABASE_URL)
    parser.add_argument("--events", type=int, default=2_000, help="backlog size per throughput run")
    parser.add_argument("--companies", type=lambda t: [int(p) for p in t.split(",")], default=[1, 10, 64])
    parser.add_argument("--senders", type=int, default=16, help="deduction senders during the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    parser.add_argument("--top-ups-per-second", type=int, default=50)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("--no-json", action="store_true")
    arguments = parser.parse_args(argv)
    console = Console()
    port = _free_port()
    receiver = start_receiver(port)
    try:
        started = datetime.now(UTC)
        result = asyncio.run(run(arguments, f"http://127.0.0.1:{port}/hook"))
    finally:
        receiver.terminate()
        receiver.wait(10)
    table = Table(title=f"wabapool worker on {shown_url(arguments.database_url)} (one worker process)")
    for column in ("run", "companies", "events", "seconds", "events/s"):
        table.add_column(column, justify="right")
    for phase in result["throughput"]:
        table.add_row(
            "backlog",
            str(phase["companies"]),
            str(phase["events"]),
            f"{phase['seconds']:.2f}",
            f"{phase['events_per_second']:.0f}",
        )
    console.print(table)
    latency = result["latency"]
    console.print(
        f"under load: {latency['senders']} deduction senders at {latency['deductions_per_second']:.0f}/s, "
        f"{latency['events']} events raised: raised → delivered p50 {latency['latency_ms_p50']:.1f} ms, "
        f"p99 {latency['latency_ms_p99']:.1f} ms, max {latency['latency_ms_max']:.1f} ms"
    )
    if not arguments.no_json:
        revision, dirty = git_state()
        RESULTS_DIRECTORY.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIRECTORY / f"worker-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
        document = {
            "bench": "worker",
            "started_at": started.isoformat(),
            "database": shown_url(arguments.database_url),
            "git_revision": revision,
            "git_dirty_paths": dirty,
            "config": {k: v for k, v in vars(arguments).items() if k != "database_url"},
            **result,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        console.print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
