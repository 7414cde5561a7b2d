"""The backfill at scale: 1,000 v2 companies with 5 WABAs each moved to v3 on PostgreSQL. Not a test.

Provisions the companies through the service (each WABA its own package with
an allowance, one WABA in postpaid use, one with a deduction), then times the
dry run of every company, `backfill --all` itself (one transaction per
company, verified inside it: what the CLI runs, without the progress bar) and
the reconcile the CLI runs after it. The database is the bench's own: its
tables are emptied first.

    python -m bench.backfill [--database-url URL] [--companies 1000] [--wabas 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select, text

from bench import product
from bench.prepare import ensure_postgres_database, shown_url
from bench.report import RESULTS_DIRECTORY
from wabapool.service import BillingService, CompanyTerms, DeductionRequest, PackageTerms
from wabapool.service import backfill as backfill_service
from wabapool.service.reconcile import reconcile
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade
from wabapool.storage.tables import companies, metadata

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/wabapool_bench_backfill"
COMPANY_ID_BASE = 900_000
# Companies provisioned at once: a few connections of a server shared with others (max_connections).
PROVISION_CONCURRENCY = 6
PRICE_MINOR = 100


async def _empty(database: Database) -> None:
    """Empty the bench's own database; refuse one that holds companies it did not create."""
    async with database.read() as connection:
        foreign = (
            await connection.execute(
                select(func.count()).select_from(companies).where(companies.c.company_id < COMPANY_ID_BASE)
            )
        ).scalar_one()
    if foreign:
        raise SystemExit(f"the database holds {foreign} companies the bench did not create: use one of its own")
    names = ", ".join(table.name for table in reversed(metadata.sorted_tables))
    async with database.transaction() as connection:
        await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


async def _provision_company(service: BillingService, company_id: int, wabas: int) -> None:
    await service.provision_company(company_id, CompanyTerms(billing_version="v2"))
    for index in range(wabas):
        waba_id = f"{company_id}{index:03d}"
        limit = 5_000 if index == 1 else 0
        terms = PackageTerms(allowance=1_000 * (index + 1), postpaid_limit=limit)
        await service.provision_waba(company_id, waba_id, name=f"bench {waba_id}", package=terms)
    # WABA 0 uses part of its allowance; WABA 1 all of it and 1,500 of its credit line.
    for index, quantity in ((0, 3), (1, 35)):
        waba_id = f"{company_id}{index:03d}"
        await service.deduct(DeductionRequest(company_id, "wa", "wa_bench_id", f"b-{waba_id}", quantity, waba_id))


async def _provision(service: BillingService, count: int, wabas: int) -> None:
    await service.set_price(
        "wa_bench_id", unit_price_minor=PRICE_MINOR, effective_from=datetime(2025, 1, 1, tzinfo=UTC)
    )
    gate = asyncio.Semaphore(PROVISION_CONCURRENCY)

    async def one(company_id: int) -> None:
        async with gate:
            await _provision_company(service, company_id, wabas)

    await asyncio.gather(*(one(COMPANY_ID_BASE + i) for i in range(count)))


async def run(url: str, count: int, wabas: int) -> dict[str, Any]:
    await ensure_postgres_database(url)
    upgrade(url)
    database = Database(url)
    try:
        await _empty(database)
        service = product.service(database)
        started = time.perf_counter()
        await _provision(service, count, wabas)
        provision_s = time.perf_counter() - started
        ids = await backfill_service.companies_to_move(service.context)

        started = time.perf_counter()
        for company_id in ids:
            await backfill_service.plan_company(service.context, company_id)
        dry_run_s = time.perf_counter() - started

        started = time.perf_counter()
        plans = await backfill_service.backfill_all(service.context, ids)
        backfill_s = time.perf_counter() - started

        started = time.perf_counter()
        report = await reconcile(database)
        reconcile_s = time.perf_counter() - started
        rerun_started = time.perf_counter()
        left = await backfill_service.companies_to_move(service.context)
        rerun_s = time.perf_counter() - rerun_started
    finally:
        await database.dispose()
    verified = [plan.verification for plan in plans if plan.verification is not None]
    return {
        "database": shown_url(url),
        "companies": len(ids),
        "wabas_per_company": wabas,
        "provision_s": round(provision_s, 2),
        "dry_run_s": round(dry_run_s, 2),
        "backfill_s": round(backfill_s, 2),
        "backfill_ms_per_company": round(1_000 * backfill_s / max(len(ids), 1), 2),
        "companies_per_s": round(len(ids) / backfill_s, 1) if backfill_s else None,
        "reconcile_s": round(reconcile_s, 2),
        "second_run_finds_s": round(rerun_s, 3),
        "second_run_companies": len(left),
        "verified_ok": sum(1 for v in verified if v.ok),
        "wabas_on_pool": f"{sum(v.wabas_on_pool for v in verified)}/{sum(v.wabas for v in verified)}",
        "money_conserved": all(v.money_conserved for v in verified),
        "reconcile_ok": report.ok,
        "at": datetime.now(UTC).isoformat(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--companies", type=int, default=1_000)
    parser.add_argument("--wabas", type=int, default=5)
    args = parser.parse_args()
    result = asyncio.run(run(args.database_url, args.companies, args.wabas))
    table = Table(title=f"backfill: {result['companies']} companies × {result['wabas_per_company']} WABAs (PostgreSQL)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, str(value))
    Console().print(table)
    RESULTS_DIRECTORY.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIRECTORY / f"backfill-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    Console().print(f"written {path}")


if __name__ == "__main__":
    main()
