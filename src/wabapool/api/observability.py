"""Feeding the Prometheus metrics from the API layer."""

from __future__ import annotations

from collections.abc import Iterable

from wabapool import metrics
from wabapool.service.models import BatchItemResult


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    metrics.HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    metrics.HTTP_REQUEST_DURATION.labels(route=route).observe(seconds)


def record_deduction(outcome: BatchItemResult) -> None:
    if outcome.error is not None:
        metrics.record_deduction("rejected", code=outcome.error.code.value)
        return
    applied = outcome.result.allocations if outcome.result is not None and outcome.status == "applied" else ()
    metrics.record_deduction(outcome.status, allocations=((a.quota_type, a.amount) for a in applied))


def record_batch(outcomes: Iterable[BatchItemResult]) -> None:
    outcomes = list(outcomes)
    metrics.BATCH_SIZE.observe(len(outcomes))
    for outcome in outcomes:
        record_deduction(outcome)
