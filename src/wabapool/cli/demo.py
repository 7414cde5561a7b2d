"""`wabapool demo`: a company with three WABAs spends one pool, end to end, on SQLite."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import select

from wabapool.domain.money import format_major
from wabapool.service import BillingService, CompanyTerms, DeductionRequest, PackageTerms, RefundRequest
from wabapool.service.reconcile import reconcile
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade
from wabapool.storage.tables import outbox_events

DEMO_COMPANY_ID = 10001
DEMO_TIMEZONE = "Asia/Jakarta"
DEMO_WABAS = (
    ("102290129340398", "Toko Sepatu Nusantara — Sales"),
    ("109836254417782", "Toko Sepatu Nusantara — Support"),
    ("114578203396121", "Toko Sepatu Nusantara — Promo"),
)
# Indonesia (+62), IDR in minor units (sen). Service conversations are free.
DEMO_PRICES = {
    "wa_marketing_id": 68_000,
    "wa_utility_id": 35_600,
    "wa_authentication_id": 35_600,
    "wa_service_id": 0,
}
DEMO_ALLOWANCE_MINOR = 200_000_000  # Rp 2,000,000 a month
DEMO_POSTPAID_LIMIT_MINOR = 100_000_000  # Rp 1,000,000 credit line
BROADCAST_MESSAGES = 6_000
BATCH_SIZE = 500
CATEGORY_WEIGHTS = {"wa_marketing_id": 70, "wa_utility_id": 20, "wa_authentication_id": 6, "wa_service_id": 4}
FIRST_NAMES = ("Budi", "Siti", "Agus", "Dewi", "Rina", "Andi", "Putri", "Joko", "Wulan", "Hendra")
LAST_NAMES = ("Santoso", "Wijaya", "Pratama", "Lestari", "Hidayat", "Saputra", "Kusuma", "Nugroho")


async def provision_demo(service: BillingService) -> None:
    """The demo company, its pool, WABAs and Indonesian price list (idempotent)."""
    await service.provision_company(
        DEMO_COMPANY_ID,
        CompanyTerms(
            billing_version="v3",
            currency="IDR",
            timezone=DEMO_TIMEZONE,
            package=PackageTerms(
                allowance=DEMO_ALLOWANCE_MINOR,
                postpaid_limit=DEMO_POSTPAID_LIMIT_MINOR,
                cycle_anchor_day=1,
                threshold_percent=Decimal("40.00"),
            ),
        ),
    )
    for waba_id, name in DEMO_WABAS:
        await service.provision_waba(DEMO_COMPANY_ID, waba_id, name=name)
    since = datetime(2025, 7, 1, tzinfo=UTC)
    for code, price in DEMO_PRICES.items():
        await service.set_price(code, unit_price_minor=price, market="62", effective_from=since)


def broadcast_requests(count: int, *, seed: int = 7) -> list[DeductionRequest]:
    """A realistic broadcast: mixed categories, Indonesian recipients, spread over the WABAs."""
    rng = random.Random(seed)
    codes = list(CATEGORY_WEIGHTS)
    weights = list(CATEGORY_WEIGHTS.values())
    requests = []
    for index in range(count):
        code = rng.choices(codes, weights)[0]
        waba_id = DEMO_WABAS[index % len(DEMO_WABAS)][0]
        requests.append(
            DeductionRequest(
                company_id=DEMO_COMPANY_ID,
                billing_code="whatsapp_message",
                deduction_code=code,
                unique_code=f"wamid.demo.{index:06d}",
                quantity=1,
                waba_id=waba_id,
                broadcast_id=f"bc-{index // 1000 + 1:04d}",
                message_id=f"wamid.demo.{index:06d}",
                category=code.removeprefix("wa_").removesuffix("_id"),
                customer_name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                phone_number=f"+628{rng.randint(11, 99)}{rng.randint(10_000_000, 99_999_999)}",
            )
        )
    return requests


async def run_demo(path: Path, console: Console) -> bool:
    if path.exists():
        path.unlink()
    url = f"sqlite:///{path}"
    upgrade(url)
    database = Database(url)
    service = BillingService(database)
    try:
        await provision_demo(service)
        console.print(f"[bold]Provisioned[/] company {DEMO_COMPANY_ID} with {len(DEMO_WABAS)} WABAs on {path}")
        outcomes = await _broadcast(service, console)
        top_up = await service.top_up(DEMO_COMPANY_ID, amount=150_000_000, payment_reference="PAY-DEMO-0001")
        console.print(
            f"Top-up Rp {format_major(top_up.amount, 'IDR')}: total now Rp {format_major(top_up.value_after, 'IDR')}"
        )
        failed = [code for code, status in outcomes if status == "applied"][:5]
        for code in failed:
            await service.refund(RefundRequest(DEMO_COMPANY_ID, code, f"refund-{code}", reason="message failed"))
        console.print(f"Refunded {len(failed)} failed messages")
        await _print_balance(service, console)
        await _print_events(database, console)
        report = await reconcile(database)
        console.print(f"reconcile: {'[green]ok[/]' if report.ok else '[red]VIOLATIONS[/]'} {report.checks}")
        for violation in report.violations:
            console.print(f"  [red]{violation}[/]")
        return report.ok
    finally:
        await database.dispose()


async def _broadcast(service: BillingService, console: Console) -> list[tuple[str, str]]:
    requests = broadcast_requests(BROADCAST_MESSAGES)
    outcomes: list[tuple[str, str]] = []
    with Progress(console=console) as progress:
        task = progress.add_task("Broadcasting", total=len(requests))
        for start in range(0, len(requests), BATCH_SIZE):
            batch = requests[start : start + BATCH_SIZE]
            results = await service.deduct_batch(batch, service_name="demo")
            outcomes += [(r.unique_code, r.status) for r in results]
            progress.advance(task, len(batch))
    counts: dict[str, int] = {}
    for _, status in outcomes:
        counts[status] = counts.get(status, 0) + 1
    console.print(f"Broadcast of {len(requests)} messages: {counts}")
    return outcomes


async def _print_balance(service: BillingService, console: Console) -> None:
    view = await service.balance(DEMO_COMPANY_ID)
    pool = Table(title=f"Shared pool of company {DEMO_COMPANY_ID} ({view.currency})")
    pool.add_column("figure")
    pool.add_column("amount", justify="right")
    for label, value in (
        ("allowance (initial)", view.allowance),
        ("initial remaining", view.initial_remaining),
        ("additional remaining", view.additional_remaining),
        ("postpaid limit", view.postpaid_limit),
        ("postpaid used", view.postpaid_used),
        ("total", view.total),
        ("available", view.available),
    ):
        pool.add_row(label, format_major(value, view.currency))
    pool.add_row("low balance", str(view.low_balance))
    zone = ZoneInfo(DEMO_TIMEZONE)
    pool.add_row(
        "cycle", f"{view.cycle_starts_at.astimezone(zone):%Y-%m-%d} → {view.cycle_ends_at.astimezone(zone):%Y-%m-%d}"
    )
    console.print(pool)
    spend = Table(title="Spend per WABA this cycle")
    spend.add_column("waba_id")
    spend.add_column("name")
    spend.add_column("spent", justify="right")
    for waba in view.wabas:
        spend.add_row(waba.waba_id, waba.name, format_major(waba.spent_this_cycle, view.currency))
    console.print(spend)


async def _print_events(database: Database, console: Console) -> None:
    async with database.read() as connection:
        rows = list(await connection.execute(select(outbox_events).order_by(outbox_events.c.id)))
    table = Table(title="Events raised (outbox)")
    table.add_column("event")
    table.add_column("dedup key")
    table.add_column("total", justify="right")
    for row in rows:
        table.add_row(row.event_type, row.dedup_key or "", format_major(int(row.payload.get("total", 0)), "IDR"))
    console.print(table)


def demo(path: Path, console: Console) -> bool:
    return asyncio.run(run_demo(path, console))
