"""`wabapool demo`: a company with three WABAs spends one pool, end to end, on SQLite."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from wabapool import bootstrap
from wabapool.domain.caps import SpendCap
from wabapool.domain.money import format_major
from wabapool.service import BillingService, CompanyTerms, DeductionRequest, PackageTerms, RefundRequest, events
from wabapool.service.reconcile import reconcile

DEMO_COMPANY_ID = 10001
DEMO_TIMEZONE = "Asia/Jakarta"
DEMO_WABAS = (
    ("102290129340398", "Toko Sepatu Nusantara — Sales"),
    ("109836254417782", "Toko Sepatu Nusantara — Support"),
    ("114578203396121", "Toko Sepatu Nusantara — Promo"),
)
# Indonesia (+62), IDR in minor units (sen). Meta's pricing as data: a dated row per change, never code. Inside an
# open customer-service window, service messages and utility templates were free until 2026-09-30; Meta charges
# them from 2026-10-01 (the charged figures here are illustrative demo rates, not Meta's published list).
_JAKARTA = ZoneInfo("Asia/Jakarta")
PRICING_SINCE = datetime(2025, 7, 1, tzinfo=UTC)
WINDOW_CHARGED_FROM = datetime(2026, 10, 1, tzinfo=_JAKARTA)
DEMO_PRICE_ROWS: tuple[tuple[str, int, datetime], ...] = (
    ("wa_marketing_id", 68_000, PRICING_SINCE),
    ("wa_authentication_id", 35_600, PRICING_SINCE),
    ("wa_utility_id", 0, PRICING_SINCE),
    ("wa_service_id", 0, PRICING_SINCE),
    ("wa_utility_id", 35_600, WINDOW_CHARGED_FROM),
    ("wa_service_id", 15_000, WINDOW_CHARGED_FROM),
)
# The price of each code as it stands today (the newest row).
DEMO_PRICES = {code: price for code, price, _ in sorted(DEMO_PRICE_ROWS, key=lambda row: row[2])}
DEMO_ALLOWANCE_MINOR = 200_000_000  # Rp 2,000,000 a month
DEMO_POSTPAID_LIMIT_MINOR = 100_000_000  # Rp 1,000,000 credit line
BROADCAST_MESSAGES = 6_000
BATCH_SIZE = 500
CATEGORY_WEIGHTS = {"wa_marketing_id": 70, "wa_utility_id": 20, "wa_authentication_id": 6, "wa_service_id": 4}
FIRST_NAMES = ("Budi", "Siti", "Agus", "Dewi", "Rina", "Andi", "Putri", "Joko", "Wulan", "Hendra")
LAST_NAMES = ("Santoso", "Wijaya", "Pratama", "Lestari", "Hidayat", "Saputra", "Kusuma", "Nugroho")


def _message(rng: random.Random, code: str, waba_id: str, message_id: str, broadcast_id: str) -> DeductionRequest:
    """One demo message: its id is its unique_code; a made-up Indonesian customer and number."""
    return DeductionRequest(
        company_id=DEMO_COMPANY_ID,
        billing_code="whatsapp_message",
        deduction_code=code,
        unique_code=message_id,
        quantity=1,
        waba_id=waba_id,
        broadcast_id=broadcast_id,
        message_id=message_id,
        category=code.removeprefix("wa_").removesuffix("_id"),
        customer_name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
        phone_number=f"+628{rng.randint(11, 99)}{rng.randint(10_000_000, 99_999_999)}",
    )


async def provision_demo(service: BillingService, *, cycle_anchor_day: int = 1) -> None:
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
                cycle_anchor_day=cycle_anchor_day,
                threshold_percent=Decimal("40.00"),
            ),
        ),
    )
    for waba_id, name in DEMO_WABAS:
        await service.provision_waba(DEMO_COMPANY_ID, waba_id, name=name)
    for code, price, effective_from in DEMO_PRICE_ROWS:
        await service.set_price(code, unit_price_minor=price, market="62", effective_from=effective_from)


def broadcast_requests(count: int, *, seed: int = 7) -> list[DeductionRequest]:
    """A realistic broadcast: mixed categories, Indonesian recipients, spread over the WABAs."""
    rng = random.Random(seed)
    codes = list(CATEGORY_WEIGHTS)
    weights = list(CATEGORY_WEIGHTS.values())
    requests = []
    for index in range(count):
        code = rng.choices(codes, weights)[0]
        waba_id = DEMO_WABAS[index % len(DEMO_WABAS)][0]
        requests.append(_message(rng, code, waba_id, f"wamid.demo.{index:06d}", f"bc-{index // 1000 + 1:04d}"))
    return requests


class DemoClock:
    """The clock injected into the service while the page's demo history is written, one past day at a time."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


PAGE_DEMO_DAYS = 14  # the cycle started this many days ago (today included), so the chart has days to show
PAGE_DEMO_PREVIOUS_DAYS = 3  # days of the cycle before, set up and spent in
PAGE_DEMO_TOP_UP_MINOR = 50_000_000  # Rp 500,000 paid on the third day
PAGE_DEMO_SPEND_PERCENT = 75  # of the cycle's funds: 25% left, under the 40% low-balance threshold
PAGE_DEMO_CHUNK = 25  # messages written per clock tick (a broadcast goes out over a few minutes)
PAGE_DEMO_REFUNDS = 5
# What each WABA sends: Sales sells, Support answers customers, Promo promotes.
PAGE_DEMO_MIX: dict[str, dict[str, int]] = {
    DEMO_WABAS[0][0]: {"wa_marketing_id": 60, "wa_utility_id": 25, "wa_authentication_id": 10, "wa_service_id": 5},
    DEMO_WABAS[1][0]: {"wa_marketing_id": 5, "wa_utility_id": 45, "wa_authentication_id": 10, "wa_service_id": 40},
    DEMO_WABAS[2][0]: {"wa_marketing_id": 95, "wa_utility_id": 5},
}
PAGE_DEMO_WABA_WEIGHTS = (5, 3, 2)


def demo_price(code: str, at: datetime) -> int:
    """The demo price list's unit price for `code` at `at` (the newest row in force)."""
    rows = [row for row in DEMO_PRICE_ROWS if row[0] == code and row[2] <= at]
    return max(rows, key=lambda row: row[2])[1] if rows else 0


def _at(day: date, hour: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)


def _day_window(day: date, now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    """Office hours of a past day; for today, up to a few minutes ago (nothing is written in the future)."""
    start, end = _at(day, 8, zone), _at(day, 21, zone)
    if day == now.astimezone(zone).date():
        end = min(end, now - timedelta(minutes=10))
        if end <= start:
            start = _at(day, 0, zone)
    return (start, end) if end > start else None


def _page_day_requests(day: date, budget_minor: int, at: datetime, rng: random.Random) -> list[DeductionRequest]:
    """One day's messages over the three WABAs until their cost reaches the day's budget."""
    requests: list[DeductionRequest] = []
    spent = 0
    wabas = [waba_id for waba_id, _ in DEMO_WABAS]
    while spent < budget_minor:
        waba_id = rng.choices(wabas, PAGE_DEMO_WABA_WEIGHTS)[0]
        mix = PAGE_DEMO_MIX[waba_id]
        code = rng.choices(list(mix), list(mix.values()))[0]
        spent += demo_price(code, at)
        index = len(requests)
        broadcast_id = f"bc-{day:%m%d}-{wabas.index(waba_id) + 1}"
        requests.append(_message(rng, code, waba_id, f"wamid.page.{day:%Y%m%d}.{index:05d}", broadcast_id))
    return requests


async def seed_page_demo(service: BillingService, *, now: datetime | None = None) -> None:
    """The demo company as the page shows it: two weeks of spend over three WABAs, a top-up, refunds, a low pool.

    The service's injected clock walks through the past days of the current cycle, so every row, ledger entry
    and event carries the time it would have had; prices come from the dated rows in force at that time.
    """
    now = now or datetime.now(UTC)
    zone = ZoneInfo(DEMO_TIMEZONE)
    clock = DemoClock(now)
    service = bootstrap.billing_service(service.database, sealer=service.sealer, clock=clock)
    today = now.astimezone(zone).date()
    first = today - timedelta(days=PAGE_DEMO_DAYS - 1)
    # The package is anchored on `first` (days past the 28th would drift) and was set up in the cycle before, so
    # its last days are history and the current cycle opens with a reset (an event in the alert history).
    clock.now = _at(first - timedelta(days=PAGE_DEMO_PREVIOUS_DAYS), 7, zone)
    await provision_demo(service, cycle_anchor_day=min(first.day, 28))
    rng = random.Random(13)
    for offset in range(PAGE_DEMO_PREVIOUS_DAYS, 0, -1):
        day = first - timedelta(days=offset)
        clock.now = _at(day, 10, zone)
        requests = _page_day_requests(day, DEMO_ALLOWANCE_MINOR // 20, clock.now, rng)
        for start in range(0, len(requests), BATCH_SIZE):
            await service.deduct_batch(requests[start : start + BATCH_SIZE], service_name="demo")
    days = [first + timedelta(days=offset) for offset in range(PAGE_DEMO_DAYS)]
    weights = [rng.randint(60, 140) * (55 if day.weekday() >= 5 else 100) for day in days]
    budget = (DEMO_ALLOWANCE_MINOR + PAGE_DEMO_TOP_UP_MINOR) * PAGE_DEMO_SPEND_PERCENT // 100
    applied: list[str] = []
    for offset, (day, weight) in enumerate(zip(days, weights, strict=True)):
        window = _day_window(day, now, zone)
        if window is None:
            continue
        start, end = window
        if offset == 2:
            clock.now = start + timedelta(hours=1)
            await service.top_up(DEMO_COMPANY_ID, amount=PAGE_DEMO_TOP_UP_MINOR, payment_reference="PAY-DEMO-PAGE-1")
        requests = _page_day_requests(day, budget * weight // sum(weights), start, rng)
        chunks = [requests[i : i + PAGE_DEMO_CHUNK] for i in range(0, len(requests), PAGE_DEMO_CHUNK)]
        step = (end - start) / max(len(chunks), 1)
        for number, chunk in enumerate(chunks):
            clock.now = start + step * number
            results = await service.deduct_batch(chunk, service_name="demo")
            applied += [result.unique_code for result in results if result.status == "applied"]
    clock.now = now - timedelta(minutes=5)
    for code in applied[-PAGE_DEMO_REFUNDS:]:
        await service.refund(RefundRequest(DEMO_COMPANY_ID, code, f"refund-{code}", reason="message failed"))
    await _cap_promo_marketing(service, rng, broadcast_id=f"bc-{today:%m%d}-3")


async def _cap_promo_marketing(service: BillingService, rng: random.Random, *, broadcast_id: str) -> None:
    """Promo's marketing gets a cap close to full: one more message warns, the one after is refused.

    The cap is what Promo's marketing spent this cycle plus one and a half messages, so the page shows a
    nearly full bar, and the alert history a `waba_cap_warning` and a `waba_cap_reached`.
    """
    waba_id = DEMO_WABAS[2][0]
    cap = SpendCap(0, frozenset({"marketing"}))
    spent = (await service.set_spend_cap(DEMO_COMPANY_ID, waba_id, cap, changed_by="service:demo")).cap_spent or 0
    price = DEMO_PRICES["wa_marketing_id"]
    amount = spent + price * 3 // 2
    # The warning mark the next message reaches (the event is raised by a charge that gets there).
    warn_percent = min(100, max(1, (spent + price) * 100 // amount))
    cap = SpendCap(amount, frozenset({"marketing"}), warn_percent)
    await service.set_spend_cap(DEMO_COMPANY_ID, waba_id, cap, changed_by="service:demo")
    for index in range(2):
        request = _message(rng, "wa_marketing_id", waba_id, f"wamid.page.capped.{index}", broadcast_id)
        await service.deduct_batch([request], service_name="demo")


async def run_demo(path: Path, console: Console) -> bool:
    if path.exists():
        path.unlink()
    settings = bootstrap.demo_settings(bootstrap.settings(), database_url=f"sqlite:///{path}")
    bootstrap.migrate(settings)
    async with bootstrap.opened_service(settings, demo=True) as service:
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
        await _print_events(service, console)
        report = await reconcile(service.database)
        console.print(f"reconcile: {'[green]ok[/]' if report.ok else '[red]VIOLATIONS[/]'} {report.checks}")
        for violation in report.violations:
            console.print(f"  [red]{violation}[/]")
        return report.ok


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


async def _print_events(service: BillingService, console: Console) -> None:
    rows = list(reversed(await events.list_events(service.database, limit=200)))  # oldest first
    table = Table(title="Events raised (outbox)")
    table.add_column("event")
    table.add_column("dedup key")
    table.add_column("total", justify="right")
    for row in rows:
        table.add_row(row.event_type, row.dedup_key or "", format_major(int(row.payload.get("total", 0)), "IDR"))
    console.print(table)


def demo(path: Path, console: Console) -> bool:
    return asyncio.run(run_demo(path, console))
