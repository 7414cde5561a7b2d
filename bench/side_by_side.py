"""Before and after in one run: the hot-pool bench of another source tree and of this one, alternating.

The machine is shared and noisy, so a figure of this code is only compared with
a figure of the older code measured minutes apart, round after round, the
order swapped each round. Each tree runs its own `bench.hot_pool` (its own
senders, its own schema, in a database of its own) with the same arguments.

    git worktree add /tmp/before <commit>     # the code to compare with
    python -m bench.side_by_side --before /tmp/before [--rounds 2] -- --pools 1,100 --senders 8,64 \\
        --variants baseline,locking,single

Prints, per cell, the before and after rates (median of the rounds) and their
ratio, p50 latencies too, and writes bench/results/side_by_side-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.report import RESULTS_DIRECTORY

THIS_TREE = Path(__file__).resolve().parent.parent
# One hot_pool run of a few cells takes minutes; a tree whose run takes past this is stuck, not slow.
RUN_TIMEOUT_SECONDS = 3_600
TABLE_WIDTH = 140  # wide enough for every column unwrapped (a pipe or CI log is 80 columns otherwise)

_Cell = tuple[int, int, str, int | None]  # pools, senders, variant, batch size


def _run(tree: Path, database_url: str, arguments: list[str]) -> dict[str, Any]:
    """One `bench.hot_pool` of `tree` on `database_url`; its JSON report."""
    results = tree / "bench" / "results"
    before = set(results.glob("hot_pool-*.json")) if results.exists() else set()
    environment = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
    command = [sys.executable, "-m", "bench.hot_pool", "--database-url", database_url, *arguments]
    Console().print(f"[bold]{tree}[/]: {' '.join(command[1:])}", markup=True, highlight=False)
    subprocess.run(command, cwd=tree, env=environment, check=False, timeout=RUN_TIMEOUT_SECONDS)
    written = sorted(set(results.glob("hot_pool-*.json")) - before)
    if not written:
        raise SystemExit(f"{tree}: bench.hot_pool wrote no report")
    return json.loads(written[-1].read_text())  # type: ignore[no-any-return]


def _cells(report: dict[str, Any]) -> dict[_Cell, dict[str, Any]]:
    return {(c["pools"], c["senders"], c["variant"], c["batch_size"]): c for c in report["cells"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, type=Path, help="the other source tree (a git worktree)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-base", default="postgresql://postgres@127.0.0.1:5432/wabapool_bench_side")
    parser.add_argument("hot_pool_arguments", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    arguments = [a for a in args.hot_pool_arguments if a != "--"]
    trees = {"before": args.before.resolve(), "after": THIS_TREE}
    rates: dict[str, dict[_Cell, list[dict[str, Any]]]] = {"before": {}, "after": {}}
    failed = []
    for index in range(args.rounds):
        order = ["before", "after"] if index % 2 == 0 else ["after", "before"]
        for name in order:
            report = _run(trees[name], f"{args.database_base}_{name}", arguments)
            failed += [] if report.get("ok", True) else [f"{name} round {index + 1}"]
            for cell, figures in _cells(report).items():
                rates[name].setdefault(cell, []).append(figures)
    rows = _table(rates)
    path = RESULTS_DIRECTORY / f"side_by_side-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    RESULTS_DIRECTORY.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"trees": {k: str(v) for k, v in trees.items()}, "rows": rows, "failed": failed}))
    Console().print(f"written {path}")
    if failed:
        raise SystemExit(f"correctness checks failed: {', '.join(failed)}")


def _median(samples: list[dict[str, Any]], key: str) -> float:
    return statistics.median(sample[key] for sample in samples)


def _table(rates: dict[str, dict[_Cell, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    table = Table(title="hot_pool before and after, side by side (median of the rounds)")
    for column in ("pools", "senders", "variant", "before /s", "after /s", "after ÷ before", "p50 ms before", "after"):
        table.add_column(column, justify="right")
    rows = []
    for cell in sorted(set(rates["before"]) & set(rates["after"]), key=lambda c: (c[0], c[1], c[2], c[3] or 0)):
        before, after = rates["before"][cell], rates["after"][cell]
        row = {
            "pools": cell[0],
            "senders": cell[1],
            "variant": cell[2] + (f" {cell[3]}" if cell[3] else ""),
            "before_per_second": _median(before, "deductions_per_second"),
            "after_per_second": _median(after, "deductions_per_second"),
            "before_p50_ms": _median(before, "latency_p50_ms"),
            "after_p50_ms": _median(after, "latency_p50_ms"),
            "rounds": len(after),
        }
        rows.append(row)
        table.add_row(
            str(row["pools"]),
            str(row["senders"]),
            row["variant"],
            f"{row['before_per_second']:,.0f}",
            f"{row['after_per_second']:,.0f}",
            f"{row['after_per_second'] / max(row['before_per_second'], 1e-9):.2f}",
            f"{row['before_p50_ms']:.2f}",
            f"{row['after_p50_ms']:.2f}",
        )
    Console(width=TABLE_WIDTH).print(table)
    return rows


if __name__ == "__main__":
    main()
