"""The run as a Rich table and as JSON in bench/results/."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.prepare import shown_url
from bench.runner import BenchRun
from bench.stats import CellResult

RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"
NOTES = (
    "deductions/s counts applied deductions over the wall time from the start barrier to the last sender's end",
    "latency is per deduction for baseline and single (baseline: first try to success, requeue waits included), "
    "per deduct_batch call for batch",
    "×base: the figure divided by the baseline's at the same pools and senders "
    "(throughput: higher is better; latency: lower is better)",
    "senders are asyncio tasks dealt round-robin over the sender processes; each process has its own engine",
    "the baseline is lean (no price lookup, ledger or outbox) so every difference favours it",
    "a cell starts no new deduction (or batch call) after its time bound (a started batch call runs to its end); "
    "baseline messages still waiting in a requeue then are dropped as unfinished (they wrote nothing) and count "
    "in its latency with their wait so far, a lower bound that flatters the baseline",
)


def _times(value: float | None) -> str:
    if value is None:
        return "–"
    return f"×{value:.3g}" if value < 100 else f"×{value:,.0f}"


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def table(run: BenchRun) -> Table:
    database = shown_url(run.config.database_url)
    grid = Table(
        title=f"hot pool — {database} — {run.config.processes} sender processes",
        caption="latency: per deduction (baseline, single), per call (batch) · ×base: ratio to the baseline · "
        "dropped: requeued baseline messages left at the time bound",
    )
    for name, justify in (
        ("pools", "right"),
        ("senders", "right"),
        ("variant", "left"),
        ("deductions", "right"),
        ("ded/s", "right"),
        ("×base", "right"),
        ("p50 ms", "right"),
        ("×base", "right"),
        ("p99 ms", "right"),
        ("×base", "right"),
        ("conflicts", "right"),
        ("retries", "right"),
        ("requeues", "right"),
        ("dropped", "right"),
        ("check", "center"),
    ):
        grid.add_column(name, justify=justify)  # type: ignore[arg-type]
    previous: tuple[int, int] | None = None
    for result in run.results:
        key = (result.pools, result.senders)
        if previous is not None and key != previous:
            grid.add_section()
        previous = key
        grid.add_row(*_row(result))
    return grid


def _row(result: CellResult) -> list[str]:
    stats = result.stats
    is_baseline = result.variant.startswith("baseline")
    ratios = result.ratios
    return [
        str(result.pools),
        str(result.senders),
        result.variant,
        f"{stats.applied:,}",
        _number(result.per_second),
        "" if is_baseline else _times(ratios.get("deductions_per_second")),
        f"{result.p50_ms:.2f}",
        "" if is_baseline else _times(ratios.get("latency_p50")),
        f"{result.p99_ms:.2f}",
        "" if is_baseline else _times(ratios.get("latency_p99")),
        f"{stats.conflicts:,}" if is_baseline else "",
        f"{stats.retries:,}" if is_baseline else "",
        f"{stats.requeues:,}" if is_baseline else "",
        f"{stats.unfinished:,}" if is_baseline else "",
        "[green]ok[/]" if result.check.ok else "[red]FAIL[/]",
    ]


SPREAD_VARIANTS = ("baseline", "locking", "single")
# How the runner labels each variant's cells (`Cell.label`).
SPREAD_LABELS = {"baseline": "baseline (RFC)", "locking": "baseline (row lock)", "single": "wabapool single"}


def _median_rate(run: BenchRun, variant: str, pools: int, senders: int) -> float | None:
    label = SPREAD_LABELS[variant]
    rates = [r.per_second for r in run.results if (r.variant, r.pools, r.senders) == (label, pools, senders)]
    return statistics.median(rates) if rates else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def spread_matrix(run: BenchRun) -> Table | None:
    """Deductions/s by pools (rows) and senders: the baselines, wabapool single, and single's ratios.

    Issue 23's goals read off it: single at N pools ≥ 0.8× its own 1-pool figure, ≥ 3× the RFC baseline
    and ≥ 2× the row-lock baseline. Medians over the rounds. None when the run has one pool count.
    """
    pools = sorted({r.pools for r in run.results})
    senders = sorted({r.senders for r in run.results})
    if len(pools) < 2:
        return None
    grid = Table(title="spread matrix — deductions/s (median of rounds); single's ratios: ×1 pool, ×base, ×lock")
    grid.add_column("pools", justify="right")
    for count in senders:
        for name in (*SPREAD_VARIANTS, "×1 pool", "×base", "×lock"):
            grid.add_column(f"{count} snd {name}", justify="right")
    for pool_count in pools:
        row = [str(pool_count)]
        for count in senders:
            rates = {variant: _median_rate(run, variant, pool_count, count) for variant in SPREAD_VARIANTS}
            row += ["–" if rates[v] is None else _number(rates[v] or 0.0) for v in SPREAD_VARIANTS]
            single = rates["single"]
            one_pool = _median_rate(run, "single", pools[0], count)
            row += [
                _times(_ratio(single, one_pool)),
                _times(_ratio(single, rates["baseline"])),
                _times(_ratio(single, rates["locking"])),
            ]
        grid.add_row(*row)
    return grid


SQLITE_NOTE = (
    "SQLite has one writer: wabapool's Database queues writers in-process and takes BEGIN IMMEDIATE, "
    "so the baseline's read and write never interleave and it sees no conflicts"
)


def notes(run: BenchRun) -> list[str]:
    return [*NOTES, SQLITE_NOTE] if run.config.database_url.startswith("sqlite") else list(NOTES)


def print_run(run: BenchRun, console: Console) -> None:
    console.print(table(run))
    matrix = spread_matrix(run)
    if matrix is not None:
        console.print(matrix)
    for note in notes(run):
        console.print(f"  · {note}", style="dim")
    for result in run.results:
        for violation in result.check.violations[:10]:
            console.print(f"[red]{result.variant}, {result.pools} pools, {result.senders} senders:[/] {violation}")


ROLLUP_OFF_LABEL = " (no roll-up)"


def rollup_costs(run: BenchRun) -> list[dict[str, Any]]:
    """Each wabapool cell run with and without the usage roll-up: medians over the rounds, and the cost."""
    rounds: dict[tuple[int, int, str], dict[bool, list[CellResult]]] = {}
    for result in run.results:
        if result.variant.startswith("baseline") or result.variant.endswith(CAPPED_LABEL):
            continue
        variant = result.variant.removesuffix(ROLLUP_OFF_LABEL)
        rollup = variant == result.variant
        rounds.setdefault((result.pools, result.senders, variant), {True: [], False: []})[rollup].append(result)
    costs = []
    for (pools, senders, variant), by_rollup in rounds.items():
        on, off = by_rollup[True], by_rollup[False]
        if not on or not off:
            continue
        on_rate = statistics.median(result.per_second for result in on)
        off_rate = statistics.median(result.per_second for result in off)
        costs.append(
            {
                "pools": pools,
                "senders": senders,
                "variant": variant,
                "per_second_with_rollup": [round(result.per_second) for result in on],
                "per_second_without_rollup": [round(result.per_second) for result in off],
                "p50_ms_with_rollup": round(statistics.median(result.p50_ms for result in on), 2),
                "p50_ms_without_rollup": round(statistics.median(result.p50_ms for result in off), 2),
                "median_with_rollup": round(on_rate),
                "median_without_rollup": round(off_rate),
                "rollup_cost_percent": round((off_rate - on_rate) / off_rate * 100, 1) if off_rate else None,
            }
        )
    return costs


CAPPED_LABEL = " (caps)"


def cap_costs(run: BenchRun) -> list[dict[str, Any]]:
    """Each wabapool cell run with a spending cap on every WABA and without: medians over the rounds, the cost."""
    rounds: dict[tuple[int, int, str], dict[bool, list[CellResult]]] = {}
    for result in run.results:
        if result.variant.startswith("baseline") or result.variant.endswith(ROLLUP_OFF_LABEL):
            continue
        variant = result.variant.removesuffix(CAPPED_LABEL)
        capped = variant != result.variant
        rounds.setdefault((result.pools, result.senders, variant), {True: [], False: []})[capped].append(result)
    costs = []
    for (pools, senders, variant), by_cap in rounds.items():
        on, off = by_cap[True], by_cap[False]
        if not on or not off:
            continue
        on_rate = statistics.median(result.per_second for result in on)
        off_rate = statistics.median(result.per_second for result in off)
        costs.append(
            {
                "pools": pools,
                "senders": senders,
                "variant": variant,
                "per_second_with_caps": [round(result.per_second) for result in on],
                "per_second_without_caps": [round(result.per_second) for result in off],
                "median_with_caps": round(on_rate),
                "median_without_caps": round(off_rate),
                "cap_cost_percent": round((off_rate - on_rate) / off_rate * 100, 1) if off_rate else None,
            }
        )
    return costs


def print_cap_costs(run: BenchRun, console: Console) -> None:
    for cost in cap_costs(run):
        console.print(
            f"  cap cost, {cost['pools']} pools {cost['senders']} senders {cost['variant']}: "
            f"median {cost['median_with_caps']:,}/s with caps, {cost['median_without_caps']:,}/s without "
            f"({cost['cap_cost_percent']}%); rounds with {cost['per_second_with_caps']}, "
            f"without {cost['per_second_without_caps']}"
        )


def print_rollup_costs(run: BenchRun, console: Console) -> None:
    for cost in rollup_costs(run):
        console.print(
            f"  roll-up cost, {cost['pools']} pools {cost['senders']} senders {cost['variant']}: "
            f"median {cost['median_with_rollup']:,}/s with, {cost['median_without_rollup']:,}/s without "
            f"({cost['rollup_cost_percent']}%); rounds with {cost['per_second_with_rollup']}, "
            f"without {cost['per_second_without_rollup']}; p50 {cost['p50_ms_with_rollup']} / "
            f"{cost['p50_ms_without_rollup']} ms"
        )


def as_json(run: BenchRun) -> dict[str, Any]:
    config = asdict(run.config)
    config["database_url"] = shown_url(run.config.database_url)
    return {
        "benchmark": "hot_pool",
        "ok": run.ok,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "database": {"url": shown_url(run.config.database_url), "sqlite": config["database_url"].startswith("sqlite")},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "git_revision": run.git_revision,
        "git_dirty_paths": run.git_dirty_paths,
        "config": config,
        "notes": notes(run),
        "cells": [result.as_json() for result in run.results],
        "rollup_costs": rollup_costs(run),
        "cap_costs": cap_costs(run),
    }


def write_json(run: BenchRun, directory: Path = RESULTS_DIRECTORY) -> Path:
    import json

    directory.mkdir(parents=True, exist_ok=True)
    stamp = run.started_at.strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"hot_pool-{stamp}.json"
    path.write_text(json.dumps(as_json(run), indent=2) + "\n")
    return path
