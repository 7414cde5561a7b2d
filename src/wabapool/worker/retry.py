"""When to try a failed delivery again: the configured schedule, full jitter, and `Retry-After`.

Attempt n (1-based) that fails is retried after a random delay in [0, schedule[n-1]] ("full jitter":
receivers recovering from an outage are not hit by every worker at once). After len(schedule) + 1
attempts the event is dead-lettered. A 429 or 503 carrying `Retry-After` waits what the receiver asked,
at most RETRY_AFTER_MAX_SECONDS.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# A receiver may not park an event for longer than the schedule's longest default step (10 h).
RETRY_AFTER_MAX_SECONDS = 36_000.0
# Status codes whose Retry-After is honoured (SPEC section 4).
RETRY_AFTER_STATUSES = frozenset({429, 503})

Uniform = Callable[[float, float], float]


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Delays (seconds) between attempts; the random source is injected for tests."""

    delays_seconds: tuple[float, ...]
    uniform: Uniform = random.uniform

    @classmethod
    def of(cls, delays_seconds: Sequence[float], uniform: Uniform = random.uniform) -> RetrySchedule:
        return cls(tuple(float(d) for d in delays_seconds), uniform)

    @property
    def max_attempts(self) -> int:
        return len(self.delays_seconds) + 1

    def delay_after(self, attempts: int, *, retry_after_seconds: float | None = None) -> float | None:
        """Seconds to wait after `attempts` failed attempts; None when the event is to be dead-lettered."""
        if attempts >= self.max_attempts:
            return None
        if retry_after_seconds is not None:
            return min(max(retry_after_seconds, 0.0), RETRY_AFTER_MAX_SECONDS)
        cap = self.delays_seconds[max(attempts, 1) - 1]
        return self.uniform(0.0, cap) if cap > 0 else 0.0


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)
