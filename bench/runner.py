"""Cells of the benchmark: sender processes ('spawn'), each running asyncio tasks on its own engine.

The processes live for the whole run and take one cell at a time: the parent
provisions the pools, hands every process its senders' queues, and releases
them together at a barrier once each has its connections open; after the
cell it runs the correctness check. Each cell starts from empty tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench import baseline, product
from bench.prepare import git_state, prepare
from bench.stats import CellResult, Check, Deadline, SenderStats
from bench.workload import COMPANY_ID_RANGE, Message, build_messages, deal, deal_batches, funding_for
from wabapool.runtime import tune_gc
from wabapool.storage import changes
from wabapool.storage.database import Database

VARIANTS = ("baseline", "locking", "single", "batch")
# The same wabapool variants with the daily usage roll-up left out of write_changes: the roll-up's price on
# the hot path (issue 12 wants it under 5%). Bench only, not run by default; the product has no such switch.
ROLLUP_OFF = "-no-rollup"
ROLLUP_OFF_VARIANTS = ("single" + ROLLUP_OFF, "batch" + ROLLUP_OFF)
# The same variants with a spending cap on every WABA, large enough never to refuse: the price of the cap
# rule on the hot path (issue 24 wants it within 10%), e.g. `--variants single,single-capped --rounds 3`.
CAPPED = "-capped"
CAPPED_VARIANTS = ("single" + CAPPED, "batch" + CAPPED)
KNOWN_VARIANTS = VARIANTS + ROLLUP_OFF_VARIANTS + CAPPED_VARIANTS
BASELINES = ("baseline", "locking")  # the RFC's optimistic lock, and a pessimistic row lock
# A full run: sized to take a few minutes on a 2-core machine.
DEFAULT_SENDERS = (1, 8, 32, 64)
DEFAULT_POOLS = (1, 100)
DEFAULT_DEDUCTIONS = 3_000
DEFAULT_BATCH_DEDUCTIONS = 10_000
DEFAULT_BATCH_SIZES = (100, 1_000)
DEFAULT_PROCESSES = 2
# The baseline's contended cells run at tens of deductions a second: bound every cell's sending time.
DEFAULT_CELL_SECONDS = 6.0
# Upper bounds, so a stuck run fails instead of hanging.
BARRIER_TIMEOUT_SECONDS = 120
CELL_TIMEOUT_SECONDS = 900


@dataclass(frozen=True, slots=True)
class BenchConfig:
    database_url: str
    senders: tuple[int, ...] = DEFAULT_SENDERS
    pools: tuple[int, ...] = DEFAULT_POOLS
    deductions: int = DEFAULT_DEDUCTIONS
    batch_deductions: int = DEFAULT_BATCH_DEDUCTIONS
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    processes: int = DEFAULT_PROCESSES
    # A bound on a cell's sending time: past it no new deduction starts (None: send everything).
    cell_seconds: float | None = DEFAULT_CELL_SECONDS
    variants: tuple[str, ...] = VARIANTS
    seed: int = 20_260_701
    # Every cell this many times, each round in the reverse order of the one before (on/off side by side).
    rounds: int = 1
    # The broken baseline (tests only): no lock_version guard, and a pause between read and write.
    baseline_guarded: bool = True
    baseline_read_write_gap_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Cell:
    variant: str
    pools: int
    senders: int
    batch_size: int | None = None

    @property
    def label(self) -> str:
        if self.variant == "baseline":
            return "baseline (RFC)"
        if self.variant == "locking":
            return "baseline (row lock)"
        suffix = " (no roll-up)" if self.variant.endswith(ROLLUP_OFF) else ""
        suffix += " (caps)" if self.variant.endswith(CAPPED) else ""
        if base_variant(self.variant) == "single":
            return "wabapool single" + suffix
        return f"wabapool batch {self.batch_size}{suffix}"


def base_variant(variant: str) -> str:
    """single or batch (or a baseline), without the twins' suffixes."""
    return variant.removesuffix(ROLLUP_OFF).removesuffix(CAPPED)


@dataclass(frozen=True, slots=True)
class Work:
    """One process's share of a cell: a queue per sender task."""

    url: str
    variant: str
    at: datetime
    queues: list[Any]
    cell_seconds: float | None
    baseline_guarded: bool
    baseline_read_write_gap_seconds: float


def cells_of(config: BenchConfig) -> list[Cell]:
    cells: list[Cell] = []
    for pools in config.pools:
        for senders in config.senders:
            for variant in config.variants:
                if base_variant(variant) == "batch":
                    cells.extend(Cell(variant, pools, senders, size) for size in config.batch_sizes)
                else:
                    cells.append(Cell(variant, pools, senders))
    return cells


def message_count(config: BenchConfig, cell: Cell) -> int:
    """Single deductions: --deductions. Batches: whole calls, at least one per sender."""
    if cell.batch_size is None:
        return config.deductions
    wanted = max(config.batch_deductions, cell.senders * cell.batch_size)
    return math.ceil(wanted / cell.batch_size) * cell.batch_size


# -- the sender side (runs in the spawned processes) ------------------------------


async def _warm_up(database: Database, connections: int) -> None:
    """Open the senders' connections before the clock starts."""
    if database.is_sqlite:
        # Its connections are cheap, and one holding BEGIN IMMEDIATE would block the next.
        async with database.read() as connection:
            await connection.exec_driver_sql("SELECT 1")
        return
    opened = []
    try:
        for _ in range(connections):
            opened.append(await database.engine.connect())
            await opened[-1].exec_driver_sql("SELECT 1")
    finally:
        for connection in opened:
            await connection.close()


@contextlib.contextmanager
def _usage_rollup(*, enabled: bool) -> Iterator[None]:
    """With `enabled` off, write_changes skips the daily usage roll-up in this process (and only here)."""
    if enabled:
        yield
        return
    summed = changes._summed_usage  # noqa: SLF001 - the seam: the roll-up's rows, which the write then leaves out

    def nothing_to_roll_up(_changes: Any) -> list[Any]:
        return []

    changes._summed_usage = nothing_to_roll_up  # noqa: SLF001
    try:
        yield
    finally:
        changes._summed_usage = summed  # noqa: SLF001


async def _run_work(work: Work, barrier: Any) -> SenderStats:
    with _usage_rollup(enabled=not work.variant.endswith(ROLLUP_OFF)):
        return await _run_cell_work(work, barrier)


async def _run_cell_work(work: Work, barrier: Any) -> SenderStats:
    database = Database(work.url)
    try:
        if work.variant in BASELINES:
            deducter: baseline.BaselineDeducter | baseline.LockingDeducter = (
                baseline.BaselineDeducter(
                    database,
                    guarded=work.baseline_guarded,
                    read_write_gap_seconds=work.baseline_read_write_gap_seconds,
                )
                if work.variant == "baseline"
                else baseline.LockingDeducter(database)
            )

            def sender(q: Any, s: SenderStats, d: Deadline) -> Any:
                return baseline.send(deducter, q, s, d)
        else:
            service = product.service(database, clock=product.FixedClock(work.at))

            def sender(q: Any, s: SenderStats, d: Deadline) -> Any:
                if base_variant(work.variant) == "single":
                    return product.send_single(service, q, s, d)
                return product.send_batches(service, q, s, d)

        await _warm_up(database, len(work.queues))
        await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT_SECONDS)
        per_task = [SenderStats() for _ in work.queues]
        started = time.monotonic()
        deadline = Deadline.after(work.cell_seconds)
        await asyncio.gather(*(sender(q, s, deadline) for q, s in zip(work.queues, per_task, strict=True)))
        finished = time.monotonic()
    finally:
        await database.dispose()
    merged = SenderStats(started=started, finished=finished)
    for stats in per_task:
        merged.merge(stats)
    return merged


def sender_process(index: int, commands: Any, results: Any, barrier: Any) -> None:
    """A sender process: one cell per command until None; collector settings as `wabapool serve` has them."""
    tune_gc()
    while (work := commands.get()) is not None:
        try:
            results.put((index, asyncio.run(_run_work(work, barrier)), None))
        except BaseException:  # reported to the parent, which stops the run
            barrier.abort()
            results.put((index, None, traceback.format_exc()))


class SenderProcesses:
    """P spawned processes that run cells on command."""

    def __init__(self, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.barrier = context.Barrier(processes + 1)
        self.results: Any = context.Queue()
        self.commands: list[Any] = [context.Queue() for _ in range(processes)]
        self.processes = [
            context.Process(target=sender_process, args=(i, self.commands[i], self.results, self.barrier), daemon=True)
            for i in range(processes)
        ]
        for process in self.processes:
            process.start()

    def run(self, works: list[Work]) -> list[SenderStats]:
        for commands, work in zip(self.commands, works, strict=True):
            commands.put(work)
        # A process that failed before the start breaks the barrier; its report says why.
        with contextlib.suppress(threading.BrokenBarrierError):
            self.barrier.wait(BARRIER_TIMEOUT_SECONDS)
        collected = []
        for _ in self.processes:
            try:
                collected.append(self.results.get(timeout=CELL_TIMEOUT_SECONDS))
            except queue.Empty as error:
                raise RuntimeError("a sender process did not report within the cell timeout") from error
        failures = [failure for _, _, failure in collected if failure]
        if failures:
            raise RuntimeError("sender process failed:\n" + "\n".join(failures))
        return [stats for _, stats, _ in sorted(collected, key=lambda item: item[0])]

    def close(self) -> None:
        for commands in self.commands:
            commands.put(None)
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


# -- the parent ---------------------------------------------------------------------


def _works(config: BenchConfig, cell: Cell, messages: list[Message], at: datetime) -> list[Work]:
    """Sender i runs in process i mod P."""
    if cell.batch_size is None:
        queues: list[Any] = deal(messages, cell.senders)
    else:
        queues = deal_batches(messages, cell.senders, cell.batch_size)
    return [
        Work(
            url=config.database_url,
            variant=cell.variant,
            at=at,
            queues=queues[index :: config.processes],
            cell_seconds=config.cell_seconds,
            baseline_guarded=config.baseline_guarded,
            baseline_read_write_gap_seconds=config.baseline_read_write_gap_seconds,
        )
        for index in range(config.processes)
    ]


async def _provision(database: Database, cell: Cell, messages: list[Message], at: datetime) -> None:
    fundings = funding_for(messages, cell.pools)
    if cell.variant in BASELINES:
        await baseline.provision(database, fundings)
    else:
        await product.reset(database)
        service = product.service(database, clock=product.FixedClock(at))
        await product.provision(service, fundings, capped=cell.variant.endswith(CAPPED))
    if not database.is_sqlite:
        # Statistics of what was just provisioned, as autovacuum would gather on a live database before long.
        # Without them the planner takes the tables for as small as after the TRUNCATE: at 10,000 pools a
        # group's lock scanned every package and sorted every component (EXPLAIN ANALYZE of a lock of 30
        # packages: 7.7 ms, 1.6 ms after ANALYZE), and the row-lock baseline's bucket read alike.
        async with database.transaction() as connection:  # committed: statistics roll back with a transaction
            await connection.exec_driver_sql("ANALYZE")


async def _check(database: Database, cell: Cell, stats: SenderStats) -> Check:
    if cell.variant in BASELINES:
        result = await baseline.check(database, applied=stats.applied)
    else:
        result = await product.check(database, applied=stats.applied)
    if stats.applied + stats.unfinished != stats.sent:
        result.violations.append(
            f"sent {stats.sent}: applied {stats.applied}, unfinished {stats.unfinished}, "
            f"replayed {stats.replayed}, rejected {stats.rejected}, "
            f"errors {stats.errors} {stats.error_samples}"
        )
    return result


async def run_cell(
    config: BenchConfig, cell: Cell, database: Database, senders: SenderProcesses, at: datetime
) -> CellResult:
    messages = build_messages(message_count(config, cell), cell.pools, seed=config.seed + cell.pools)
    await _provision(database, cell, messages, at)
    per_process = await asyncio.to_thread(senders.run, _works(config, cell, messages, at))
    busy = [stats for stats in per_process if stats.finished > 0 and stats.calls > 0]
    merged = SenderStats()
    for stats in per_process:
        merged.merge(stats)
    wall = max(s.finished for s in busy) - min(s.started for s in busy) if busy else 0.0
    return CellResult(
        variant=cell.label,
        pools=cell.pools,
        senders=cell.senders,
        processes=min(config.processes, cell.senders),
        planned=len(messages),
        batch_size=cell.batch_size,
        latency_unit="call" if cell.batch_size else "deduction",
        wall_seconds=wall,
        stats=merged,
        check=await _check(database, cell, merged),
    )


def add_ratios(results: list[CellResult]) -> None:
    """Every wabapool figure over the baseline's at the same pools and senders."""
    baselines = {(r.pools, r.senders): r for r in results if r.variant == "baseline (RFC)"}

    def ratio(value: float, base: float) -> float | None:
        return round(value / base, 3) if base > 0 else None

    for result in results:
        base = baselines.get((result.pools, result.senders))
        if base is None or result is base:
            continue
        result.ratios = {
            "deductions_per_second": ratio(result.per_second, base.per_second),
            "latency_p50": ratio(result.p50_ms, base.p50_ms),
            "latency_p99": ratio(result.p99_ms, base.p99_ms),
        }


@dataclass(slots=True)
class BenchRun:
    config: BenchConfig
    started_at: datetime
    finished_at: datetime | None = None
    results: list[CellResult] = field(default_factory=list)
    # The code measured: HEAD when the run started, and modified files under src/ then.
    git_revision: str | None = None
    git_dirty_paths: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(result.check.ok for result in self.results)


async def run_bench(config: BenchConfig, on_cell: Callable[[CellResult], None] | None = None) -> BenchRun:
    """Every cell of the configuration, in order; ratios filled in at the end."""
    if config.processes < 1:
        raise ValueError("at least one sender process")
    if max(config.pools) > COMPANY_ID_RANGE:
        raise ValueError(f"at most {COMPANY_ID_RANGE} pools")
    revision, dirty = git_state()
    run = BenchRun(config=config, started_at=datetime.now(UTC), git_revision=revision, git_dirty_paths=dirty)
    await prepare(config.database_url)
    database = Database(config.database_url)
    senders = await asyncio.to_thread(SenderProcesses, config.processes)
    try:
        for round_index in range(config.rounds):
            cells = cells_of(config)
            for cell in reversed(cells) if round_index % 2 else cells:
                result = await run_cell(config, cell, database, senders, run.started_at)
                run.results.append(result)
                if on_cell is not None:
                    on_cell(result)
    finally:
        await asyncio.to_thread(senders.close)
        await database.dispose()
    add_ratios(run.results)
    run.finished_at = datetime.now(UTC)
    return run
