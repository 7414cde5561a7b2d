"""What a sender measures, what a cell reports, and the figures derived from them."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

ERROR_SAMPLES_MAX = 5
COUNTERS = (
    "sent",
    "calls",
    "applied",
    "replayed",
    "rejected",
    "errors",
    "conflicts",
    "retries",
    "requeues",
    "unfinished",
)


@dataclass(slots=True)
class SenderStats:
    """Counts and latencies of one process's senders (merged across its tasks)."""

    latencies_seconds: list[float] = field(default_factory=list)
    sent: int = 0
    calls: int = 0
    applied: int = 0
    replayed: int = 0
    rejected: int = 0
    errors: int = 0
    conflicts: int = 0
    retries: int = 0
    requeues: int = 0
    # Baseline only: requeued messages dropped at the deadline (they wrote nothing).
    unfinished: int = 0
    started: float = 0.0
    finished: float = 0.0
    error_samples: list[str] = field(default_factory=list)

    def note_error(self, error: BaseException) -> None:
        self.errors += 1
        if len(self.error_samples) < ERROR_SAMPLES_MAX:
            self.error_samples.append(repr(error))

    def merge(self, other: SenderStats) -> None:
        self.latencies_seconds.extend(other.latencies_seconds)
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        room = ERROR_SAMPLES_MAX - len(self.error_samples)
        self.error_samples.extend(other.error_samples[:room])


@dataclass(frozen=True, slots=True)
class Deadline:
    """After it, senders start no new deduction (what they started, they finish)."""

    at: float = math.inf

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        return cls() if seconds is None else cls(time.monotonic() + seconds)

    def passed(self) -> bool:
        return time.monotonic() >= self.at


@dataclass(slots=True)
class Check:
    """The correctness check after a cell: what was compared, and what did not hold."""

    figures: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def percentile(values: list[float], percent: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class CellResult:
    variant: str
    pools: int
    senders: int
    processes: int
    planned: int
    batch_size: int | None
    latency_unit: str
    wall_seconds: float
    stats: SenderStats
    check: Check
    ratios: dict[str, float | None] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.stats.applied / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.stats.latencies_seconds, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.stats.latencies_seconds, 99) * 1000

    def as_json(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "variant": self.variant,
            "pools": self.pools,
            "senders": self.senders,
            "processes": self.processes,
            "batch_size": self.batch_size,
            "planned": self.planned,
            "sent": stats.sent,
            "applied": stats.applied,
            "replayed": stats.replayed,
            "rejected": stats.rejected,
            "errors": stats.errors,
            "error_samples": stats.error_samples,
            "calls": stats.calls,
            "wall_seconds": round(self.wall_seconds, 4),
            "deductions_per_second": round(self.per_second, 1),
            "latency_unit": self.latency_unit,
            "latency_p50_ms": round(self.p50_ms, 3),
            "latency_p99_ms": round(self.p99_ms, 3),
            "conflicts": stats.conflicts,
            "retries": stats.retries,
            "requeues": stats.requeues,
            "unfinished": stats.unfinished,
            "check": {"ok": self.check.ok, "figures": self.check.figures, "violations": self.check.violations},
            "ratio_to_baseline": self.ratios,
        }
