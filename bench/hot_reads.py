"""`billings/info` while 64 senders charge the same pool: read latency and database reads, write-through on and off.

In one process: the app on PostgreSQL through an in-memory ASGI transport, 64
sender tasks posting deductions to one company's pool, and one reader asking
for `billings/info` every few milliseconds. Rounds alternate between the
balance cache written through by each change (`on`) and only invalidated by it
(`off`, the way before: the 5 s invalidation fence makes nearly every read of
a busy pool miss); each round charges a pool of its own, its cache filled by
one read before the senders start. Per mode: read
p50/p95, cache loads per read, statements per 100 reads (loads x the
statements one load runs, counted on its own), deductions applied per second.
Prints a table; writes JSON to bench/results/.

    python -m bench.hot_reads [--database-url URL] [--redis-url URL] [--rounds 4] [--seconds 8] [--senders 64]
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
WABA_PREFIX = "1042000000"
READ_INTERVAL_SECONDS = 0.005
MODES = ("on", "off")
console = Console()


async def _fresh_database(url: str) -> None:
    from wabapool.storage.migrate import upgrade

    admin = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
    name = url.rsplit("/", 1)[1]
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    upgrade(url)


class Counted:
    """Counts the cache's loads (its fallback to the database) of one app."""

    def __init__(self, context: Any) -> None:
        self.loads = 0
        self.load = context.balances.cached._load  # noqa: SLF001 - the bench counts what the cache falls back to

        async def counted_load(company_id: int) -> Any:
            self.loads += 1
            return await self.load(company_id)

        context.balances.cached._load = counted_load  # noqa: SLF001


async def _provision(client: httpx.AsyncClient, company_id: int, internal: dict[str, str]) -> str:
    waba = f"{WABA_PREFIX}{company_id:05d}"
    package = {"allowance": 10**13, "postpaid_limit": 0, "cycle_anchor_day": 1}
    (
        await client.put(f"/iag/v1/companies/{company_id}", json={"package": package}, headers=internal)
    ).raise_for_status()
    (
        await client.put(f"/iag/v1/companies/{company_id}/wabas/{waba}", json={"name": "W"}, headers=internal)
    ).raise_for_status()
    return waba


async def _round(
    client: httpx.AsyncClient, counted: Counted, *, company_id: int, seconds: float, senders: int
) -> dict[str, Any]:
    """One pool charged by `senders` for `seconds` while one reader reads its balance."""
    from wabapool.security import issue_token

    internal = {"X-Api-Key": API_KEY}
    bearer = {"Authorization": "Bearer " + issue_token(company_id=company_id, role="owner", secret=JWT_SECRET)}
    waba = await _provision(client, company_id, internal)
    # Past the invalidation fence the provisioning raised, then one read fills the cache: both modes start warm,
    # so the figures are the steady state of a busy pool, not its first read.
    await asyncio.sleep(5.1)
    (await client.get("/api/core/v1/billings/info", headers=bearer)).raise_for_status()
    loads_before = counted.loads
    stop = time.monotonic() + seconds
    applied = 0

    async def sender(index: int) -> None:
        nonlocal applied
        sequence = 0
        while time.monotonic() < stop:
            sequence += 1
            body = {
                "company_id": company_id,
                "billing_code": "whatsapp",
                "deduction_code": "wa_marketing_id",
                "unique_code": f"s{index}-{sequence}",
                "quantity": 1,
                "extra_attrs": {"waba_id": waba},
            }
            response = await client.post("/iag/v1/quota-managements/deduction", json=body, headers=internal)
            applied += response.status_code == 200

    timings: list[float] = []
    last: dict[str, Any] = {}

    async def reader() -> None:
        nonlocal last
        while time.monotonic() < stop:
            started = time.perf_counter()
            response = await client.get("/api/core/v1/billings/info", headers=bearer)
            timings.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            last = response.json()
            await asyncio.sleep(READ_INTERVAL_SECONDS)

    await asyncio.gather(reader(), *(sender(index) for index in range(senders)))
    # Every sender has its answer: the next read shows every deduction (100 minor units each).
    final = (await client.get("/api/core/v1/billings/info", headers=bearer)).json()
    spent = final["wabas"][0]["spent_this_cycle"]
    if spent != 100 * applied or final["balance"]["total"] != 10**13 - 100 * applied:
        raise RuntimeError(f"the read after the senders shows {spent} spent, {applied} deductions were applied")
    return {"timings": timings, "loads": counted.loads - loads_before, "applied": applied, "seconds": seconds}


def _summary(rounds: list[dict[str, Any]], statements_per_load: int) -> dict[str, Any]:
    timings = sorted(t for r in rounds for t in r["timings"])
    loads = sum(r["loads"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    applied = sum(r["applied"] for r in rounds)
    return {
        "rounds": len(rounds),
        "reads": len(timings),
        "read_p50_ms": round(statistics.median(timings), 2),
        "read_p95_ms": round(timings[int(len(timings) * 0.95) - 1], 2),
        "cache_loads": loads,
        "loads_per_read": round(loads / len(timings), 4),
        "statements_per_100_reads": round(100 * loads * statements_per_load / len(timings), 2),
        "deductions_per_second": round(applied / seconds),
        "deductions_per_second_by_round": [round(r["applied"] / r["seconds"]) for r in rounds],
    }


async def run(url: str, redis_url: str | None, rounds: int, seconds: float, senders: int) -> dict[str, Any]:
    from wabapool import bootstrap
    from wabapool.config import Settings
    from wabapool.storage.database import Database

    await _fresh_database(url)
    os.environ.setdefault("WABAPOOL_LOG_LEVEL", "WARNING")  # a request log line per deduction would be the bench
    settings = Settings(
        database_url=url,
        redis_url=redis_url,
        api_keys=f"bench:{API_KEY}",
        jwt_secret=JWT_SECRET,
        pii_keys=PII_KEYS,
        # One reader as fast as it can measures the read path, not a tenant: the public API's rate limits
        # (50/s a company by default) would turn the bench into a 429 count.
        rate_company_per_second=1e9,
        rate_company_burst=10**9,
        rate_token_per_second=1e9,
        rate_token_burst=10**9,
    )
    database = Database(url)
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    for engine in database.engines:
        event.listen(engine.sync_engine, "before_cursor_execute", count)

    # Companies new to this run: a Redis kept from an earlier run holds versions of that run's pools.
    first_company = int(time.time()) % 10_000 * 100
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    statements_per_load = 0
    clients = []
    try:
        for mode in MODES:
            context = bootstrap.app_context(settings, database=database, write_through=mode == "on")
            app = bootstrap.create_app(settings, context=context)
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
            clients.append((mode, client, context, Counted(context)))
        price = {"unit_price": 100, "effective_from": "2025-07-01T00:00:00Z"}
        internal = {"X-Api-Key": API_KEY}
        (await clients[0][1].put("/iag/v1/price-list/wa_marketing_id", json=price, headers=internal)).raise_for_status()
        await _provision(clients[0][1], first_company, internal)
        before = statements
        await clients[0][3].load(first_company)
        statements_per_load = statements - before
        for index in range(rounds):
            mode, client, _, counted = clients[index % len(clients)]
            result = await _round(
                client, counted, company_id=first_company + 1 + index, seconds=seconds, senders=senders
            )
            results[mode].append(result)
            console.print(f"round {index + 1} ({mode}): {len(result['timings'])} reads, {result['applied']} deductions")
    finally:
        for _, client, context, _ in clients:
            await client.aclose()
            await context.balances.cache.close()
        await database.dispose()
    return {
        "senders": senders,
        "seconds_per_round": seconds,
        "cache": "redis" if redis_url else "in-process",
        "statements_per_load": statements_per_load,
        **{f"write_through_{mode}": _summary(results[mode], statements_per_load) for mode in MODES if results[mode]},
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--redis-url", default=None, help="the cache on this Redis (default: in-process)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating on, off, on, ...")
    parser.add_argument("--seconds", type=float, default=8, help="per round")
    parser.add_argument("--senders", type=int, default=64)
    args = parser.parse_args()
    result = await run(args.database_url, args.redis_url, args.rounds, args.seconds, args.senders)
    table = Table(title=f"billings/info under a hot pool ({result['cache']} cache, {result['senders']} senders)")
    table.add_column("figure")
    modes = [mode for mode in MODES if f"write_through_{mode}" in result]
    for mode in modes:
        table.add_column(f"write-through {mode}", justify="right")
    for key in result[f"write_through_{modes[0]}"]:
        table.add_row(key, *(str(result[f"write_through_{mode}"][key]) for mode in modes))
    table.add_row("statements_per_load", *(str(result["statements_per_load"]) for _ in modes))
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"hot_reads-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
