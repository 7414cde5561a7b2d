"""`wabapool bench …`: run the repository's benchmarks (bench/ at the repo root, not installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

import wabapool

bench_app = typer.Typer(help="Benchmarks from the repository's bench/ directory.", no_args_is_help=True)


@bench_app.callback()
def bench() -> None:
    """Benchmarks from the repository's bench/ directory (a source checkout)."""


def bench_directory() -> Path:
    """bench/ beside src/ in a source checkout; a clear error when wabapool runs from an installed copy."""
    directory = Path(wabapool.__file__).resolve().parents[2] / "bench"
    if not (directory / "hot_pool.py").is_file():
        typer.echo(
            f"no benchmarks at {directory}: `wabapool bench` runs from a source checkout "
            "(pip install -e . in the repository), not from an installed package",
            err=True,
        )
        raise typer.Exit(2)
    return directory


@bench_app.command("hot-pool")
def hot_pool(
    database_url: Annotated[
        str | None,
        typer.Option(help="postgresql://… or sqlite:///path (default: WABAPOOL_DATABASE_URL, else wabapool_bench)."),
    ] = None,
    senders: Annotated[str | None, typer.Option(help="Concurrent senders per cell, e.g. 1,8,32,64.")] = None,
    pools: Annotated[str | None, typer.Option(help="Pools the load is spread over, e.g. 1,100.")] = None,
    deductions: Annotated[int | None, typer.Option(help="Deductions per baseline/single cell.")] = None,
    batch_deductions: Annotated[int | None, typer.Option(help="Deductions per batch cell.")] = None,
    batch_sizes: Annotated[str | None, typer.Option(help="Items per deduct_batch call, e.g. 100,1000.")] = None,
    cell_seconds: Annotated[float | None, typer.Option(help="Time bound of a cell (0: none).")] = None,
    processes: Annotated[int | None, typer.Option(help="Sender processes.")] = None,
    variants: Annotated[str | None, typer.Option(help="Designs to run, e.g. baseline,single,batch.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A few hundred deductions, one concurrency level.")] = False,
    no_json: Annotated[bool, typer.Option("--no-json", help="Do not write bench/results/*.json.")] = False,
) -> None:
    """Many senders on one hot pool (and on 100): the RFC's optimistic lock against wabapool."""
    directory = bench_directory()
    command = [sys.executable, "-m", "bench.hot_pool"]
    options = {
        "--database-url": database_url,
        "--senders": senders,
        "--pools": pools,
        "--deductions": deductions,
        "--batch-deductions": batch_deductions,
        "--batch-sizes": batch_sizes,
        "--cell-seconds": cell_seconds,
        "--processes": processes,
        "--variants": variants,
    }
    for flag, value in options.items():
        if value is not None:
            command += [flag, str(value)]
    if quick:
        command.append("--quick")
    if no_json:
        command.append("--no-json")
    completed = subprocess.run(command, cwd=directory.parent, check=False)
    raise typer.Exit(completed.returncode)
