"""Retry schedule: full jitter on the configured delays, Retry-After bounded, a dead letter after the last."""

from __future__ import annotations

from datetime import UTC, datetime

from wabapool.config import DEFAULT_WEBHOOK_RETRY_SECONDS
from wabapool.worker.retry import RETRY_AFTER_MAX_SECONDS, RetrySchedule, parse_retry_after


def test_each_failed_attempt_waits_a_random_part_of_its_scheduled_delay() -> None:
    calls: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        calls.append((low, high))
        return high * 0.25

    schedule = RetrySchedule.of(DEFAULT_WEBHOOK_RETRY_SECONDS, uniform)
    delays = [schedule.delay_after(n) for n in range(1, 8)]
    assert calls == [(0.0, d) for d in (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)]
    assert delays == [d * 0.25 for d in (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)]


def test_after_the_last_scheduled_retry_the_event_is_dead_lettered() -> None:
    schedule = RetrySchedule.of((0, 0))
    assert schedule.max_attempts == 3
    assert schedule.delay_after(2) == 0.0
    assert schedule.delay_after(3) is None


def test_retry_after_replaces_the_jitter_and_is_bounded() -> None:
    schedule = RetrySchedule.of((5,), lambda low, high: 1.0)
    assert schedule.delay_after(1, retry_after_seconds=120) == 120
    assert schedule.delay_after(1, retry_after_seconds=10**9) == RETRY_AFTER_MAX_SECONDS
    assert schedule.delay_after(2, retry_after_seconds=120) is None  # the last attempt stays the last


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)
    assert parse_retry_after("30", now=now) == 30
    assert parse_retry_after("Tue, 10 Nov 2026 03:02:00 GMT", now=now) == 120
    assert parse_retry_after("Tue, 10 Nov 2026 02:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon", now=now) is None and parse_retry_after(None, now=now) is None
