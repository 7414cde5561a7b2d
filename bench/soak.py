"""Soak (issue 20): ten minutes of mixed load, the servers' RSS sampled every 10 s, no error but intended ones.

    .venv/bin/python -m bench.soak                          # 10 minutes
    .venv/bin/python -m bench.soak --minutes 2 --json /tmp/soak.json

The fault run's cluster (its own PostgreSQL and Redis, two `serve`, two `worker`) without the nemesis: the
clients' deductions, batches, refunds and top-ups (`bench.faults_clients`), readers of every well-behaved
company (balance, logs, usage, whole CSV downloads) and the hostile tenant all the time. Prints each API
process's RSS at the start and the end and its linear trend (least squares, MB per minute, after the first
minute's warm-up), every answer by outcome, and the errors: anything but `quota_exceeded` and 429. It also runs
the fault run's checker (money exactly once, reconcile). Exits 1 on any error or violation.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.faults import RESULTS, company_plans, provision, secret
from bench.faults_check import (
    Histories,
    Report,
    check_balances,
    check_money,
    count_pending,
    read_state,
    unhandled_errors,
)
from bench.faults_clients import ClientConfig, HostileConfig, ReaderConfig, client_main, hostile_main, reader_main
from bench.faults_cluster import Cluster, wait_until
from bench.faults_receiver import Receiver

SAMPLE_SECONDS = 10.0
# RSS before this is warm-up (imports, pools filling, caches): the trend is fitted after it.
WARM_UP_SECONDS = 60.0
# After the stop: clients finish their operations, the workers drain the outbox.
SETTLE_DEADLINE_SECONDS = 120.0
# Intended rejections: a pool that cannot pay, and the hostile tenant's rate or export limits.
INTENDED = ("rejected(quota_exceeded)", " 429")


def rss_bytes(pid: int) -> int:
    """Resident set size from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def slope_mb_per_minute(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time, MB per minute."""
    if len(samples) < 2:
        return 0.0
    xs = [t / 60 for t, _ in samples]
    ys = [rss / 2**20 for _, rss in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var


def run(minutes: float, seed: int, console: Console) -> dict[str, Any]:
    from wabapool.security import issue_token

    rng = random.Random(seed)
    cluster = Cluster.create()
    receiver = Receiver(secret())
    context = multiprocessing.get_context("spawn")
    stop, hostile_on = context.Event(), context.Event()
    processes: list[Any] = []
    samples: dict[str, list[tuple[float, int]]] = {}
    report = Report()
    try:
        receiver.start()
        cluster.start()
        from bench.faults import RunOptions

        per_client, hostile_plan = company_plans(RunOptions(), rng)
        plans = [plan for group in per_client for plan in group]
        histories = [cluster.directory / "history-setup.jsonl"]
        provision(cluster, receiver, plans, hostile_plan, 20_000, histories[0])
        tokens = {
            plan.company_id: issue_token(
                company_id=plan.company_id, role="owner", secret=cluster.jwt_secret, ttl_seconds=24 * 3600
            )
            for plan in [*plans, hostile_plan]
        }
        base_urls = [api.base_url for api in cluster.apis]
        give_up_at = time.time() + minutes * 60 + SETTLE_DEADLINE_SECONDS
        for index, group in enumerate(per_client):
            path = cluster.directory / f"history-{index}.jsonl"
            histories.append(path)
            config = ClientConfig(
                index, base_urls, cluster.api_key, group, str(path), seed * 100 + index, give_up_at=give_up_at
            )
            processes.append(context.Process(target=client_main, args=(config, stop), name=f"client{index}"))
        hostile_path = cluster.directory / "history-hostile.jsonl"
        reader_path = cluster.directory / "history-readers.jsonl"
        histories += [hostile_path, reader_path]
        hostile = HostileConfig(
            base_urls, cluster.api_key, tokens[hostile_plan.company_id], hostile_plan, str(hostile_path),
            seed * 100 + 99, give_up_at,
        )  # fmt: skip
        readers = ReaderConfig(base_urls, {p.company_id: tokens[p.company_id] for p in plans}, str(reader_path), seed)
        processes.append(context.Process(target=hostile_main, args=(hostile, hostile_on, stop), name="hostile"))
        processes.append(context.Process(target=reader_main, args=(readers, stop), name="readers"))
        hostile_on.set()
        for process in processes:
            process.start()
        console.print(f"[bold]soak[/] {minutes:g} min in {cluster.directory}; RSS every {SAMPLE_SECONDS:g} s")
        begin = time.monotonic()
        end = begin + minutes * 60
        ticker = threading.Event()
        while True:
            elapsed = time.monotonic() - begin
            for api in cluster.apis:
                pid = api.pid()
                if pid is not None:
                    samples.setdefault(f"serve:{api.port}", []).append((elapsed, rss_bytes(pid)))
            line = "  ".join(f"{name} {series[-1][1] / 2**20:.0f} MB" for name, series in samples.items())
            console.print(f"{elapsed:5.0f} s  {line}")
            if time.monotonic() >= end:
                break
            ticker.wait(min(SAMPLE_SECONDS, max(0.0, end - time.monotonic())))
        stop.set()
        hostile_on.clear()
        deadline = time.monotonic() + SETTLE_DEADLINE_SECONDS
        for process in processes:
            process.join(max(1.0, deadline - time.monotonic()))
            if process.is_alive():
                report.fail(f"{process.name} did not finish within {SETTLE_DEADLINE_SECONDS:g} s of the stop")
                process.kill()
        companies = [plan.company_id for plan in [*plans, hostile_plan]]
        try:
            wait_until(
                lambda: count_pending(cluster.postgres.url, companies) == 0,
                SETTLE_DEADLINE_SECONDS,
                "every outbox event delivered",
            )
        except TimeoutError as exc:
            report.fail(str(exc))
        loaded = Histories.load(histories)
        state = read_state(cluster.postgres.url, companies)
        check_money(loaded, state, [*plans, hostile_plan], report)
        check_balances(state, [*plans, hostile_plan], base_urls, cluster.api_key, tokens, report)
        reconcile = cluster.run_cli("reconcile")
        if reconcile.returncode != 0:
            report.fail(f"wabapool reconcile exited {reconcile.returncode}: {reconcile.stdout[-2000:]}")
        answers: Counter[str] = Counter()
        for (op, told), count in loaded.outcomes().items():
            answers[f"{op} {told}"] += count
        for record in loaded.records:
            if record["op"].endswith("_counts"):
                answers.update({f"{record['op'].removesuffix('_counts')} {k}": v for k, v in record["counts"].items()})
        errors = {
            name: count
            for name, count in answers.items()
            if not (name.endswith((" applied", " replayed")) or any(ok in name for ok in INTENDED))
            and not name.split()[-1].startswith("2")
        }
        for name, count in errors.items():
            report.fail(f"{count} × {name}")
        trends = {}
        for name, series in samples.items():
            warm = [(t, rss) for t, rss in series if t >= WARM_UP_SECONDS] or series
            trends[name] = {
                "start_mb": series[0][1] / 2**20,
                "after_warm_up_mb": warm[0][1] / 2**20,
                "end_mb": series[-1][1] / 2**20,
                "peak_mb": max(rss for _, rss in series) / 2**20,
                "slope_mb_per_min": slope_mb_per_minute(warm),
            }
        return {
            "unhandled_errors": dict(unhandled_errors((cluster.directory / "logs").glob("*.log"))),
            "minutes": minutes,
            "rss": trends,
            "samples": {name: [(round(t, 1), rss) for t, rss in series] for name, series in samples.items()},
            "answers": dict(answers),
            "violations": report.violations,
            "ok": not report.violations,
        }
    finally:
        stop.set()
        for process in processes:
            if process.is_alive():
                process.kill()
        receiver.stop()
        # Errors keep the run's logs and histories (the processes' unhandled errors are in the result too).
        if report.violations:
            console.print(f"kept {cluster.directory} (logs/, history-*.jsonl)")
        cluster.destroy(keep=bool(report.violations))


def render(result: dict[str, Any], console: Console) -> None:
    rss = Table(title="server RSS (MB)")
    for column in ("process", "start", "after warm-up", "end", "peak", "trend MB/min"):
        rss.add_column(column, justify="right")
    for name, t in result["rss"].items():
        rss.add_row(
            name, f"{t['start_mb']:.1f}", f"{t['after_warm_up_mb']:.1f}", f"{t['end_mb']:.1f}", f"{t['peak_mb']:.1f}",
            f"{t['slope_mb_per_min']:+.2f}",
        )  # fmt: skip
    console.print(rss)
    answers = Table(title="answers")
    answers.add_column("what")
    answers.add_column("count", justify="right")
    for name, count in sorted(result["answers"].items()):
        answers.add_row(name, f"{count:,}")
    console.print(answers)
    console.print(f"unhandled errors in the processes' logs: {result['unhandled_errors']}", markup=False)
    console.print(f"violations and errors: {len(result['violations'])}")
    for violation in result["violations"][:100]:
        console.print(violation, style="red", markup=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    console = Console()
    result = run(args.minutes, args.seed, console)
    render(result, console)
    path = args.json or RESULTS / f"soak-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {path}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
