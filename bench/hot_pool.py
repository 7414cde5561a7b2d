"""The hot pool: many senders on one pool (and on 100), the RFC's design against wabapool.

    python -m bench.hot_pool [--database-url URL] [--senders 1,8,32,64] [--pools 1,100] [--spread]
                             [--deductions N] [--processes P] [--quick] [--rounds N]
                             [--variants baseline,locking,single,batch,single-no-rollup,batch-no-rollup,
                                         single-capped,batch-capped]

Each cell (pools × senders × variant) starts from empty tables, runs the
senders in P spawned processes, and ends with a correctness check; the run
prints a table, writes bench/results/hot_pool-<timestamp>.json, and exits 1
when any check failed.

The `-no-rollup` variants run single and batch with the daily usage roll-up
left out of the write (in the sender processes only): alternated with their
twins over `--rounds`, they price the roll-up on the hot path, e.g.
`--pools 1 --senders 64 --variants single,single-no-rollup,batch,batch-no-rollup
--batch-sizes 1000 --rounds 5`. The `-capped` variants give every WABA a spending cap that never refuses:
alternated with their twins they price the cap rule (`--variants single,single-capped --rounds 3`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from rich.console import Console

from bench.prepare import ForeignDataError, default_database_url, free_connections, shown_url
from bench.report import print_cap_costs, print_rollup_costs, print_run, write_json
from bench.runner import (
    DEFAULT_BATCH_DEDUCTIONS,
    DEFAULT_BATCH_SIZES,
    DEFAULT_CELL_SECONDS,
    DEFAULT_DEDUCTIONS,
    DEFAULT_POOLS,
    DEFAULT_PROCESSES,
    DEFAULT_SENDERS,
    KNOWN_VARIANTS,
    VARIANTS,
    BenchConfig,
    run_bench,
)
from bench.stats import CellResult

QUICK_DEDUCTIONS = 300
QUICK_BATCH_DEDUCTIONS = 1_000
QUICK_SENDERS = (8,)
QUICK_POOLS = (1,)
SPREAD_POOLS = (1, 10, 100, 1_000, 10_000)
SPREAD_SENDERS = (8, 64)
SPREAD_VARIANTS = ("baseline", "locking", "single")
TABLE_WIDTH = 180
CONNECTION_MARGIN = 8


def _counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"a comma-separated list of integers, not {text!r}") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("positive integers, at least one")
    return values


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("a positive integer")
    return value


def _variants(text: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(values) - set(KNOWN_VARIANTS))
    if not values or unknown:
        raise argparse.ArgumentTypeError(f"a comma-separated list of {', '.join(KNOWN_VARIANTS)}")
    return values


def _listed(values: tuple[int, ...]) -> str:
    return ",".join(str(value) for value in values)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.hot_pool", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=default_database_url(),
        help="postgresql://… or sqlite:///path (default: WABAPOOL_DATABASE_URL, else the local wabapool_bench)",
    )
    parser.add_argument("--senders", type=_counts, help=f"concurrent senders per cell ({_listed(DEFAULT_SENDERS)})")
    parser.add_argument("--pools", type=_counts, help=f"pools the messages are spread over ({_listed(DEFAULT_POOLS)})")
    parser.add_argument(
        "--deductions", type=_positive, help=f"deductions per baseline/single cell ({DEFAULT_DEDUCTIONS})"
    )
    parser.add_argument(
        "--batch-deductions",
        type=_positive,
        help=f"deductions per batch cell, at least one full call per sender ({DEFAULT_BATCH_DEDUCTIONS})",
    )
    parser.add_argument(
        "--batch-sizes",
        type=_counts,
        default=DEFAULT_BATCH_SIZES,
        help=f"items per deduct_batch call ({_listed(DEFAULT_BATCH_SIZES)})",
    )
    parser.add_argument(
        "--cell-seconds",
        type=float,
        default=DEFAULT_CELL_SECONDS,
        help=f"start no new deduction after this long in a cell ({DEFAULT_CELL_SECONDS:g}; 0: no bound)",
    )
    parser.add_argument(
        "--processes", type=_positive, default=DEFAULT_PROCESSES, help=f"sender processes ({DEFAULT_PROCESSES})"
    )
    parser.add_argument("--seed", type=int, default=20_260_701, help="seed of the message plan")
    parser.add_argument(
        "--variants",
        type=_variants,
        default=VARIANTS,
        help=f"which designs to run ({','.join(VARIANTS)}; also {','.join(KNOWN_VARIANTS[len(VARIANTS) :])}); "
        "ratios need the baseline",
    )
    parser.add_argument(
        "--rounds", type=_positive, default=1, help="run every cell this many times, alternating the order (1)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_DEDUCTIONS} deductions ({QUICK_BATCH_DEDUCTIONS} a batch cell), "
        f"{_listed(QUICK_SENDERS)} senders, {_listed(QUICK_POOLS)} pool, unless given explicitly",
    )
    parser.add_argument(
        "--spread",
        action="store_true",
        help=f"issue 23's spread matrix: pools {_listed(SPREAD_POOLS)}, senders {_listed(SPREAD_SENDERS)}, "
        f"variants {','.join(SPREAD_VARIANTS)}, unless given explicitly",
    )
    parser.add_argument("--no-json", action="store_true", help="do not write bench/results/hot_pool-*.json")
    return parser.parse_args(argv)


def config_from(arguments: argparse.Namespace) -> BenchConfig:
    quick = arguments.quick
    spread = arguments.spread
    default_senders = SPREAD_SENDERS if spread else (QUICK_SENDERS if quick else DEFAULT_SENDERS)
    default_pools = SPREAD_POOLS if spread else (QUICK_POOLS if quick else DEFAULT_POOLS)
    return BenchConfig(
        database_url=arguments.database_url,
        senders=arguments.senders or default_senders,
        pools=arguments.pools or default_pools,
        deductions=arguments.deductions or (QUICK_DEDUCTIONS if quick else DEFAULT_DEDUCTIONS),
        batch_deductions=arguments.batch_deductions or (QUICK_BATCH_DEDUCTIONS if quick else DEFAULT_BATCH_DEDUCTIONS),
        batch_sizes=arguments.batch_sizes,
        cell_seconds=arguments.cell_seconds if arguments.cell_seconds > 0 else None,
        processes=arguments.processes,
        seed=arguments.seed,
        variants=SPREAD_VARIANTS if spread and arguments.variants == VARIANTS else arguments.variants,
        rounds=arguments.rounds,
    )


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    config = config_from(arguments)
    # Wide enough for the table when the output is a pipe or a file.
    console = Console() if sys.stdout.isatty() else Console(width=TABLE_WIDTH)
    console.print(
        f"hot pool on {shown_url(config.database_url)}: senders {list(config.senders)}, pools {list(config.pools)}, "
        f"{config.deductions} deductions a cell ({config.batch_deductions} for batch cells), "
        f"{config.processes} processes, cells bounded to {config.cell_seconds or 'unbounded'} s"
    )

    free = asyncio.run(free_connections(config.database_url))
    # The baseline holds one connection per sender; the parent and other clients need a few more.
    if free is not None and free < max(config.senders) + CONNECTION_MARGIN:
        console.print(
            f"[yellow]warning:[/] PostgreSQL has {free} free connections and the baseline wants "
            f"{max(config.senders)}; other clients of the server may make cells fail"
        )

    def progress(result: CellResult) -> None:
        mark = "ok" if result.check.ok else "[red]FAIL[/]"
        console.print(
            f"  {result.pools:>3} pools {result.senders:>3} senders  {result.variant:<22} "
            f"{result.per_second:>10,.0f}/s  {result.wall_seconds:6.2f} s  {mark}"
        )

    try:
        run = asyncio.run(run_bench(config, on_cell=progress))
    except ForeignDataError as error:
        console.print(f"[red]refused:[/] {error}")
        return 2
    print_run(run, console)
    print_rollup_costs(run, console)
    print_cap_costs(run, console)
    if not arguments.no_json:
        console.print(f"wrote {write_json(run)}")
    return 0 if run.ok else 1


if __name__ == "__main__":
    sys.exit(main())
