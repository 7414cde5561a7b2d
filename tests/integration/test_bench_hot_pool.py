"""The hot-pool benchmark in quick form on PostgreSQL: not timed, only its correctness checks.

Its checks must pass for the RFC baseline and for wabapool's single and batch
paths, and must catch an unguarded baseline (a blind read-modify-write without
the lock_version condition) losing updates under concurrent senders.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import typer
from bench import product
from bench.prepare import ForeignDataError
from bench.report import print_run, rollup_costs, write_json
from bench.runner import BenchConfig, run_bench
from rich.console import Console
from sqlalchemy import func, select

import wabapool
from tests.conftest import service_for
from tests.services import prepare_postgres
from wabapool.cli import bench as bench_cli
from wabapool.service import CompanyTerms, PackageTerms
from wabapool.storage.database import Database
from wabapool.storage.tables import deduction_requests, waba_daily_usage

pytestmark = [pytest.mark.postgres]

QUICK = {"senders": (8,), "pools": (1,), "processes": 2, "cell_seconds": None}


@pytest.fixture
async def postgres_bench_url() -> str:
    """WABAPOOL_TEST_POSTGRES_DB, created, migrated and emptied; a failure, not a skip, under CI=true."""
    url = prepare_postgres()
    database = Database(url)
    try:
        await product.reset(database)
    finally:
        await database.dispose()
    return url


async def test_quick_run_passes_its_checks_for_the_baseline_and_wabapool(
    postgres_bench_url: str, tmp_path: Path
) -> None:
    config = BenchConfig(
        database_url=postgres_bench_url, deductions=300, batch_deductions=400, batch_sizes=(100,), **QUICK
    )

    run = await run_bench(config)

    assert [result.variant for result in run.results] == [
        "baseline (RFC)",
        "baseline (row lock)",
        "wabapool single",
        "wabapool batch 100",
    ]
    for result in run.results:
        assert result.check.ok, (result.variant, result.check.violations)
        assert result.stats.applied == result.stats.sent == result.planned
        assert result.stats.errors == 0 and result.stats.rejected == 0
    baseline, locking, single, batch = run.results
    for lean in (baseline, locking):
        assert lean.check.figures["deduction_rows"] == 300
        assert lean.check.figures["deduction_amount_minor"] == lean.check.figures["bucket_decrease_minor"]
    assert locking.stats.conflicts == locking.stats.retries == 0  # a row lock waits instead of retrying
    assert single.check.figures["deductions_in_ledger"] == 300
    assert batch.stats.calls == 8 and batch.check.figures["deduction_rows"] == 800
    assert run.ok

    written = json.loads(write_json(run, tmp_path).read_text())
    assert written["ok"] is True
    assert [cell["ratio_to_baseline"] != {} for cell in written["cells"]] == [False, True, True, True]
    console = Console(record=True, width=160)
    print_run(run, console)
    assert "wabapool batch 100" in console.export_text()


async def test_check_catches_lost_updates_of_a_baseline_without_the_lock_version_guard(
    postgres_bench_url: str,
) -> None:
    # A pause between read and write lets the 8 senders on one pool overwrite each other.
    config = BenchConfig(
        database_url=postgres_bench_url,
        deductions=200,
        variants=("baseline",),
        baseline_guarded=False,
        baseline_read_write_gap_seconds=0.005,
        **QUICK,
    )

    run = await run_bench(config)

    (result,) = run.results
    assert result.stats.applied == 200 and result.stats.conflicts == 0
    assert not result.check.ok
    assert any("lost" in violation for violation in result.check.violations), result.check.violations
    figures = result.check.figures
    assert figures["deduction_amount_minor"] > figures["bucket_decrease_minor"]
    assert not run.ok


async def test_bench_refuses_a_database_holding_companies_it_did_not_create(postgres_bench_url: str) -> None:
    database = Database(postgres_bench_url)
    try:
        await service_for(database).provision_company(1001, CompanyTerms(package=PackageTerms(allowance=1_000)))
    finally:
        await database.dispose()

    with pytest.raises(ForeignDataError):
        await run_bench(BenchConfig(database_url=postgres_bench_url, variants=("baseline",), **QUICK))


def test_bench_command_says_clearly_when_bench_is_not_beside_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    installed = tmp_path / "site-packages" / "wabapool" / "__init__.py"
    monkeypatch.setattr(wabapool, "__file__", str(installed))

    with pytest.raises(typer.Exit) as raised:
        bench_cli.bench_directory()

    assert raised.value.exit_code == 2


async def _messages_rolled_up_and_sent(url: str) -> tuple[int, int]:
    """Messages in the daily usage roll-up, and in the deduction rows."""
    database = Database(url)
    try:
        async with database.read() as connection:
            rolled_up = await connection.execute(select(func.coalesce(func.sum(waba_daily_usage.c.messages), 0)))
            sent = await connection.execute(select(func.coalesce(func.sum(deduction_requests.c.quantity), 0)))
            return int(rolled_up.scalar_one()), int(sent.scalar_one())
    finally:
        await database.dispose()


async def test_the_no_rollup_twin_writes_no_daily_usage_and_rounds_alternate_the_order(postgres_bench_url: str) -> None:
    twins = ("single", "single-no-rollup")
    config = BenchConfig(database_url=postgres_bench_url, deductions=100, variants=twins, **QUICK)

    once = await run_bench(config)  # ends with the twin: the tables hold what it wrote
    assert [result.variant for result in once.results] == ["wabapool single", "wabapool single (no roll-up)"]
    rolled_up, sent = await _messages_rolled_up_and_sent(postgres_bench_url)
    assert once.ok and rolled_up == 0 and sent > 0

    twice = await run_bench(replace(config, rounds=2))  # the second round reversed: ends with the roll-up on
    assert [result.variant for result in twice.results] == [
        "wabapool single",
        "wabapool single (no roll-up)",
        "wabapool single (no roll-up)",
        "wabapool single",
    ]
    rolled_up, sent = await _messages_rolled_up_and_sent(postgres_bench_url)
    assert twice.ok and rolled_up == sent > 0
    [cost] = rollup_costs(twice)
    assert cost["variant"] == "wabapool single" and len(cost["per_second_without_rollup"]) == 2
