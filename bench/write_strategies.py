"""The strategies of `storage.changes.write_changes`, side by side on PostgreSQL.

Each round writes one group of N deductions into one pool with `core`, `copy`
and `statement` (the order rotating, so the machine's noise falls on all), and
times the write itself: wall time and this process's CPU. Not a test.

    python -m bench.write_strategies [--database-url URL] [--sizes 1,16,64,1000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import product
from bench.report import RESULTS_DIRECTORY
from wabapool.domain import operations
from wabapool.domain.deduction import decide
from wabapool.domain.pricing import PriceBook
from wabapool.pii import PiiSealer
from wabapool.service import CompanyTerms, DeductionRequest, PackageTerms
from wabapool.service.deduction_rows import Prepared, pool_changes_of
from wabapool.storage import companies as company_store
from wabapool.storage import pools as pool_store
from wabapool.storage.changes import Strategy, reserve_deduction_ids, write_changes
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade

COMPANY_ID = 777_001
WABA_ID = "777001001"
SEALER = PiiSealer(product.BENCH_PII_KEYS)
STRATEGIES = ("core", "copy", "statement")


async def _prepare(database: Database) -> None:
    service = product.service(database)
    await service.provision_company(COMPANY_ID, CompanyTerms(package=PackageTerms(allowance=10**14)))
    await service.provision_waba(COMPANY_ID, WABA_ID, name="bench")
    await service.set_price("wa_bench_id", unit_price_minor=1, effective_from=datetime(2025, 1, 1, tzinfo=UTC))


async def _one_group(database: Database, size: int, strategy: Strategy, round_index: int) -> tuple[float, float]:
    """(wall ms, CPU ms) of deciding and writing one group; the transaction is the service's."""
    items = [
        Prepared.of(
            DeductionRequest(COMPANY_ID, "wa", "wa_bench_id", f"{strategy}-{size}-{round_index}-{i}", 1, WABA_ID),
            SEALER,
            "bench",
        )
        for i in range(size)
    ]
    at = datetime.now(UTC)
    async with database.transaction() as connection:
        prices = await company_store.prices_for(connection, COMPANY_ID, {"wa_bench_id"})
        reserved = await reserve_deduction_ids(connection, size)
        pool = await pool_store.load_pool(connection, COMPANY_ID, for_update=True)
        if pool is None:
            raise RuntimeError("the bench pool is missing")
        caught_up = operations.catch_up(pool.state, at)
        book = PriceBook(prices, company_id=COMPANY_ID, at=at)
        decided = decide(items, {pool.package_id: caught_up.state}, {}, {WABA_ID: pool.package_id}, book)
        ids = {(COMPANY_ID, a.item.unique_code): row_id for a, row_id in zip(decided.applied, reserved, strict=False)}
        changes = pool_changes_of(pool, caught_up, decided, ids, at)
        wall, cpu = time.perf_counter(), time.process_time()
        await write_changes(connection, [changes], at=at, strategy=strategy)
        return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


async def run(url: str, sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    upgrade(url)
    database = Database(url)
    try:
        await _prepare(database)
        rows = []
        for size in sizes:
            timings: dict[str, list[tuple[float, float]]] = {name: [] for name in STRATEGIES}
            for index in range(rounds):
                turn = index % len(STRATEGIES)
                for strategy in STRATEGIES[turn:] + STRATEGIES[:turn]:
                    timings[strategy].append(await _one_group(database, size, strategy, index))  # type: ignore[arg-type]
            for strategy, samples in timings.items():
                rows.append(
                    {
                        "size": size,
                        "strategy": strategy,
                        "rounds": rounds,
                        "wall_ms_p50": statistics.median(s[0] for s in samples),
                        "cpu_ms_p50": statistics.median(s[1] for s in samples),
                    }
                )
        return rows
    finally:
        await database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/wabapool_bench")
    parser.add_argument("--sizes", default="1,16,64,1000")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    rows = asyncio.run(run(args.database_url, [int(s) for s in args.sizes.split(",")], args.rounds))
    table = Table(title="write_changes: the strategies side by side (PostgreSQL, p50 of rotating rounds)")
    for column in ("deductions", "strategy", "wall ms", "CPU ms", "÷ copy"):
        table.add_column(column, justify="right")
    by_key = {(row["size"], row["strategy"]): row for row in rows}
    for row in rows:
        copy = by_key[(row["size"], "copy")]
        table.add_row(
            str(row["size"]),
            row["strategy"],
            f"{row['wall_ms_p50']:.2f}",
            f"{row['cpu_ms_p50']:.2f}",
            f"{row['wall_ms_p50'] / copy['wall_ms_p50']:.2f}",
        )
    Console().print(table)
    RESULTS_DIRECTORY.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIRECTORY / f"write_strategies-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(rows, indent=2))
    Console().print(f"written {path}")


if __name__ == "__main__":
    main()
