"""Feeding the Prometheus metrics from the API layer."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from wabapool import metrics
from wabapool.service.models import BatchItemResult


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    metrics.HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    metrics.HTTP_REQUEST_DURATION.labels(route=route).observe(seconds)


def record_batch(outcomes: Iterable[BatchItemResult], *, batch: bool = True) -> None:
    """Count outcomes per label set first: one increment per set, not per item."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    amounts: dict[str, int] = defaultdict(int)
    size = 0
    for outcome in outcomes:
        size += 1
        if outcome.error is not None:
            counts["rejected", outcome.error.code.value] += 1
            continue
        counts[outcome.status, ""] += 1
        if outcome.result is not None and outcome.status == "applied":
            for allocation in outcome.result.allocations:
                amounts[allocation.quota_type] += allocation.amount
    metrics.record_deductions(counts, amounts)
    if batch:
        metrics.BATCH_SIZE.observe(size)


def record_deduction(outcome: BatchItemResult) -> None:
    record_batch((outcome,), batch=False)
