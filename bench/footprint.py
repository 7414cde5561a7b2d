"""Rows and bytes a deduction leaves in PostgreSQL: the sizing figures of docs/scale-out.md.

    python -m bench.footprint [--database-url URL] [--deductions N] [--wabas W] [--batch B] [--phone]

On a database of its own (created, migrated and emptied; default
`<WABAPOOL_TEST_POSTGRES_DB or wabapool>_footprint`), one company with W
WABAs is funded, then N deductions are sent through `deduct_batch` in calls of
B (the pipeline's path; a single call per message writes the same rows).
Before and after, every table's row count and `pg_total_relation_size` (heap,
indexes, TOAST) are read after `VACUUM ANALYZE` (the tables are then as
autovacuum keeps them: the updated rows' old versions reused, not counted as
growth). Prints per table and in total the rows and bytes per deduction, and
what 100 M messages a day make of them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import UTC, datetime

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench import product
from bench.prepare import ensure_postgres_database, shown_url
from wabapool.service import CompanyTerms, PackageTerms
from wabapool.service.models import DeductionRequest
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade
from wabapool.storage.tables import metadata

# A database of its own, named after the caller's test database when there is one (helpers share a server).
DEFAULT_URL = (
    "postgresql://postgres@127.0.0.1:5432/" + os.environ.get("WABAPOOL_TEST_POSTGRES_DB", "wabapool") + "_footprint"
)
COMPANY_ID = 9_100
MESSAGES_PER_DAY = 100_000_000
SECONDS_PER_DAY = 86_400


async def _sizes(url: str) -> dict[str, tuple[int, int]]:
    """(rows, bytes) of every table of the public schema, after VACUUM ANALYZE."""
    connection = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        await connection.execute("VACUUM ANALYZE")
        names = [
            row["relname"]
            for row in await connection.fetch(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1"
            )
        ]
        sizes = {}
        for name in names:
            rows = await connection.fetchval(f'SELECT count(*) FROM "{name}"')
            size = await connection.fetchval("SELECT pg_total_relation_size($1::regclass)", name)
            sizes[name] = (int(rows), int(size))
        return sizes
    finally:
        await connection.close()


async def run(url: str, *, deductions: int, wabas: int, batch: int, phone: bool) -> dict[str, tuple[float, float]]:
    await ensure_postgres_database(url)
    upgrade(url)
    database = Database(url)
    async with database.transaction() as connection:
        names = ", ".join(table.name for table in reversed(metadata.sorted_tables))
        await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    service = product.service(database)
    await service.provision_company(COMPANY_ID, CompanyTerms(package=PackageTerms(allowance=10**12)))
    waba_ids = [f"91{index:010d}" for index in range(wabas)]
    for waba_id in waba_ids:
        await service.provision_waba(COMPANY_ID, waba_id, name=f"WABA {waba_id}")
    await service.set_price("wa_marketing_id", unit_price_minor=1, effective_from=datetime(2025, 1, 1, tzinfo=UTC))
    before = await _sizes(url)
    for start in range(0, deductions, batch):
        requests = [
            DeductionRequest(
                COMPANY_ID,
                "wa",
                "wa_marketing_id",
                f"wamid.HBgNNjI4MTIzNDU2Nzg5FQIAERgSQzQ0{n:012d}",
                1,
                waba_ids[n % wabas],
                broadcast_id=f"bc-{n // 1000}",
                message_id=f"msg-{n}",
                category="marketing",
                customer_name="Budi Santoso" if phone else None,
                phone_number="+6281234567890" if phone else None,
            )
            for n in range(start, min(start + batch, deductions))
        ]
        outcomes = await service.deduct_batch(requests, service_name="footprint")
        failed = [o for o in outcomes if o.status != "applied"]
        if failed:
            raise RuntimeError(f"{len(failed)} deductions not applied: {failed[0]}")
    after = await _sizes(url)
    await database.dispose()
    return {
        name: ((after[name][0] - before[name][0]) / deductions, (after[name][1] - before[name][1]) / deductions)
        for name in after
        if after[name] != before.get(name)
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--deductions", type=int, default=20_000)
    parser.add_argument("--wabas", type=int, default=5)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--phone", action="store_true", help="with a customer name and phone (sealed PII)")
    arguments = parser.parse_args()
    per = asyncio.run(
        run(
            arguments.database_url,
            deductions=arguments.deductions,
            wabas=arguments.wabas,
            batch=arguments.batch,
            phone=arguments.phone,
        )
    )
    print(f"{shown_url(arguments.database_url)}: {arguments.deductions:,} deductions, {arguments.wabas} WABAs")
    print(f"{'table':<24}{'rows/deduction':>16}{'bytes/deduction':>17}")
    for name, (rows, size) in sorted(per.items(), key=lambda item: -item[1][1]):
        print(f"{name:<24}{rows:>16.3f}{size:>17.1f}")
    rows = sum(r for r, _ in per.values())
    size = sum(s for _, s in per.values())
    print(f"{'total':<24}{rows:>16.3f}{size:>17.1f}")
    daily = size * MESSAGES_PER_DAY
    print(
        f"100 M messages a day: {rows * MESSAGES_PER_DAY / 1e6:,.0f} M rows and {daily / 1e9:,.1f} GB a day "
        f"({daily * 30 / 1e12:,.2f} TB in 30 days); on average {MESSAGES_PER_DAY / SECONDS_PER_DAY:,.0f} "
        f"deductions/s, {rows * MESSAGES_PER_DAY / SECONDS_PER_DAY:,.0f} rows/s, "
        f"{daily / SECONDS_PER_DAY / 1e6:,.1f} MB/s of table growth"
    )


if __name__ == "__main__":
    main()
