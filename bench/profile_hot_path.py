"""Profile a deduction endpoint in-process (pyinstrument), the way the note's figures were taken.

    python -m bench.profile_hot_path [--database-url URL] [--requests 2000] [--senders 32] [--batch 0]

`--batch N` sends the requests as batches of N items to the batch endpoint
instead of one by one.

Drives the real app over ASGI (no sockets), so the profile shows the server's
own work: framework, endpoint, group commit, storage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import httpx
from pyinstrument import Profiler

from bench.http_load import API_KEY, COMPANY_ID, DEFAULT_PG, JWT_SECRET, WABAS, _prepare_database
from bench.product import BENCH_PII_KEYS
from wabapool import bootstrap
from wabapool.config import Settings


async def profile(url: str, requests: int, senders: int, batch: int) -> None:
    await asyncio.to_thread(lambda: asyncio.run(_prepare_database(url)))
    settings = Settings(database_url=url, api_keys=f"bench:{API_KEY}", jwt_secret=JWT_SECRET, pii_keys=BENCH_PII_KEYS)
    context = bootstrap.app_context(settings)
    transport = httpx.ASGITransport(app=bootstrap.create_app(settings, context=context))
    headers = {"X-Api-Key": API_KEY}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:
        package = {"allowance": 10**13, "postpaid_limit": 0, "cycle_anchor_day": 1}
        (await client.put(f"/iag/v1/companies/{COMPANY_ID}", json={"package": package})).raise_for_status()
        for waba in WABAS:
            (await client.put(f"/iag/v1/companies/{COMPANY_ID}/wabas/{waba}", json={"name": waba})).raise_for_status()
        (
            await client.put(
                "/iag/v1/price-list/wa_marketing_id",
                json={"unit_price": 68_000, "effective_from": "2025-07-01T00:00:00Z"},
            )
        ).raise_for_status()
        pending = list(range(requests))
        run = time.time_ns()

        def item(index: int) -> dict[str, object]:
            return {
                "company_id": COMPANY_ID,
                "billing_code": "wa",
                "deduction_code": "wa_marketing_id",
                "unique_code": f"profile-{run}-{index}",
                "quantity": 1,
                "extra_attrs": {"waba_id": WABAS[index % 3], "phone_number": "+6281234567890"},
            }

        async def sender() -> None:
            while pending:
                if batch:
                    items = [item(pending.pop()) for _ in range(min(batch, len(pending)))]
                    response = await client.post("/iag/v1/quota-managements/deductions", json={"items": items})
                else:
                    response = await client.post("/iag/v1/quota-managements/deduction", json=item(pending.pop()))
                response.raise_for_status()

        profiler = Profiler()
        profiler.start()
        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(senders)))
        seconds = time.perf_counter() - started
        profiler.stop()
    await context.service.database.dispose()
    unit = f"items/s in batches of {batch}" if batch else "req/s"
    print(f"{requests / seconds:,.0f} {unit} in-process ({senders} senders; includes the client's own cost)")
    print(profiler.output_text(unicode=False, color=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("WABAPOOL_DATABASE_URL", DEFAULT_PG))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--batch", type=int, default=0, help="items per call to the batch endpoint (0: single)")
    args = parser.parse_args()
    os.environ.setdefault("WABAPOOL_LOG_LEVEL", "WARNING")
    asyncio.run(profile(args.database_url, args.requests, args.senders, args.batch))


if __name__ == "__main__":
    main()
