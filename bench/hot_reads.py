"""`billings/info` while 64 senders charge the same pool: read latency and database reads per request.

In one process: the app on PostgreSQL through an in-memory ASGI transport, 64
sender tasks posting deductions to one company's pool, and one reader asking
for `billings/info` every few milliseconds. The balance cache's invalidation
fence (5 s after every change) makes nearly every read of a busy pool miss;
this measures how often (cache loads per read) and what a read costs then.
Statements per read = loads per read x the statements one load runs (counted
on its own). Prints a table; writes JSON to bench/results/.

    python -m bench.hot_reads [--database-url URL] [--seconds 10] [--senders 64]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import event

RESULTS = Path(__file__).parent / "results"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/wabapool_bench_reads"
API_KEY = "bench-key-0123456789abcdef"
JWT_SECRET = "bench-secret-0123456789abcdef0123456789"
PII_KEYS = "bench:" + base64.b64encode(b"bench reads pii key, 32 bytes!!!").decode()
COMPANY_ID = 42
WABA = "104200000000001"
READ_INTERVAL_SECONDS = 0.005
console = Console()


async def _fresh_database(url: str) -> None:
    from wabapool.storage.migrate import upgrade

    admin = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
    name = url.rsplit("/", 1)[1]
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    upgrade(url)


async def run(url: str, seconds: float, senders: int) -> dict[str, Any]:
    from wabapool.api.app import create_app
    from wabapool.api.context import AppContext
    from wabapool.config import Settings
    from wabapool.security import issue_token

    await _fresh_database(url)
    os.environ.setdefault("WABAPOOL_LOG_LEVEL", "WARNING")  # a request log line per deduction would be the bench
    settings = Settings(database_url=url, api_keys=f"bench:{API_KEY}", jwt_secret=JWT_SECRET, pii_keys=PII_KEYS)
    context = AppContext.build(settings)
    app = create_app(settings, context=context)
    internal = {"X-Api-Key": API_KEY}
    bearer = {"Authorization": "Bearer " + issue_token(company_id=COMPANY_ID, role="owner", secret=JWT_SECRET)}
    statements = 0

    @event.listens_for(context.database.engine.sync_engine, "before_cursor_execute")
    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    loads = 0
    load = context.balances._load  # noqa: SLF001 - the bench counts what the cache falls back to

    async def counted_load(company_id: int) -> dict[str, Any]:
        nonlocal loads
        loads += 1
        return await load(company_id)

    context.balances._load = counted_load  # noqa: SLF001
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        package = {"allowance": 10**13, "postpaid_limit": 0, "cycle_anchor_day": 1}
        (
            await client.put(f"/iag/v1/companies/{COMPANY_ID}", json={"package": package}, headers=internal)
        ).raise_for_status()
        (
            await client.put(f"/iag/v1/companies/{COMPANY_ID}/wabas/{WABA}", json={"name": "W"}, headers=internal)
        ).raise_for_status()
        price = {"unit_price": 100, "effective_from": "2025-07-01T00:00:00Z"}
        (await client.put("/iag/v1/price-list/wa_marketing_id", json=price, headers=internal)).raise_for_status()
        (await client.get("/api/core/v1/billings/info", headers=bearer)).raise_for_status()
        before = statements
        await load(COMPANY_ID)
        statements_per_load = statements - before
        stop = time.monotonic() + seconds
        applied = 0

        async def sender(index: int) -> None:
            nonlocal applied
            sequence = 0
            while time.monotonic() < stop:
                sequence += 1
                body = {
                    "company_id": COMPANY_ID,
                    "billing_code": "whatsapp",
                    "deduction_code": "wa_marketing_id",
                    "unique_code": f"s{index}-{sequence}",
                    "quantity": 1,
                    "extra_attrs": {"waba_id": WABA},
                }
                response = await client.post("/iag/v1/quota-managements/deduction", json=body, headers=internal)
                applied += response.status_code == 200

        timings: list[float] = []

        async def reader() -> None:
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = await client.get("/api/core/v1/billings/info", headers=bearer)
                timings.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                await asyncio.sleep(READ_INTERVAL_SECONDS)

        loads = 0
        await asyncio.gather(reader(), *(sender(index) for index in range(senders)))
    await context.database.dispose()
    ordered = sorted(timings)
    return {
        "senders": senders,
        "seconds": seconds,
        "deductions_applied": applied,
        "reads": len(timings),
        "read_p50_ms": round(statistics.median(ordered), 2),
        "read_p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 2),
        "cache_loads": loads,
        "loads_per_read": round(loads / len(timings), 3),
        "statements_per_load": statements_per_load,
        "statements_per_100_reads": round(100 * loads * statements_per_load / len(timings), 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--senders", type=int, default=64)
    args = parser.parse_args()
    result = await run(args.database_url, args.seconds, args.senders)
    table = Table(title="billings/info under a hot pool")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, str(value))
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"hot_reads-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
