"""`wabapool simulate --url …`: the demo's broadcast, sent over HTTP with the client SDK."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from wabapool.cli.demo import (
    DEMO_ALLOWANCE_MINOR,
    DEMO_COMPANY_ID,
    DEMO_POSTPAID_LIMIT_MINOR,
    DEMO_PRICE_ROWS,
    DEMO_WABAS,
    broadcast_requests,
)
from wabapool.client import AsyncWabapoolClient, DeductionItem, PackageTerms, QuotaExceeded, WabapoolError
from wabapool.domain.money import format_major


async def _provision(client: AsyncWabapoolClient) -> None:
    await client.put_company(
        DEMO_COMPANY_ID,
        package=PackageTerms(allowance=DEMO_ALLOWANCE_MINOR, postpaid_limit=DEMO_POSTPAID_LIMIT_MINOR),
    )
    for waba_id, name in DEMO_WABAS:
        await client.put_waba(DEMO_COMPANY_ID, waba_id, name)
    for code, price, effective_from in DEMO_PRICE_ROWS:
        await client.put_price(code, price, market="62", effective_from=effective_from.isoformat())


def _item(request) -> DeductionItem:  # type: ignore[no-untyped-def]
    return DeductionItem(
        request.company_id,
        request.billing_code,
        request.deduction_code,
        request.unique_code,
        request.quantity,
        request.waba_id,
        broadcast_id=request.broadcast_id,
        message_id=request.message_id,
        category=request.category,
        customer_name=request.customer_name,
        phone_number=request.phone_number,
    )


async def run_simulation(url: str, api_key: str, *, messages: int, concurrency: int, console: Console) -> None:
    async with AsyncWabapoolClient(url, api_key) as client:
        await _provision(client)
        items = [_item(r) for r in broadcast_requests(messages, seed=int(time.time()))]
        outcomes: Counter[str] = Counter()
        queue: asyncio.Queue[DeductionItem] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)
        started = time.perf_counter()
        with Progress(console=console) as progress:
            task = progress.add_task(f"Broadcasting over HTTP ({concurrency} senders)", total=len(items))

            async def sender() -> None:
                while not queue.empty():
                    item = queue.get_nowait()
                    try:
                        result = await client.deduct(**dataclasses.asdict(item))
                        outcomes["replayed" if result.replayed else "applied"] += 1
                    except QuotaExceeded:
                        outcomes["quota_exceeded"] += 1
                    except WabapoolError as exc:
                        outcomes[exc.code] += 1
                    progress.advance(task)

            await asyncio.gather(*(sender() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        console.print(f"{len(items)} messages in {seconds:.1f} s ({len(items) / seconds:.0f}/s): {dict(outcomes)}")
        balance = await client.balance(DEMO_COMPANY_ID)
        table = Table(title=f"Pool of company {DEMO_COMPANY_ID} after the broadcast")
        table.add_column("figure")
        table.add_column("amount (IDR)", justify="right")
        for label, value in (
            ("total", balance.total),
            ("available", balance.available),
            ("initial remaining", balance.initial_remaining),
            ("additional remaining", balance.additional_remaining),
            ("postpaid used", balance.postpaid_used),
        ):
            table.add_row(label, format_major(value, "IDR"))
        console.print(table)
