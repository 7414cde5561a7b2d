"""Prometheus metrics, all in one registry served at `/metrics`.

Every label takes values from a closed vocabulary (a route template, never a
raw path; a result or rejection code; a quota type), so the number of series
stays bounded whatever callers send.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

REGISTRY = CollectorRegistry()
process_collector.ProcessCollector(registry=REGISTRY)
platform_collector.PlatformCollector(registry=REGISTRY)
gc_collector.GCCollector(registry=REGISTRY)

# Seconds; from a cache hit (sub-millisecond) to the database timeout and past it.
LATENCY_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Items per batch, up to the batch limit (domain.limits.BATCH_MAX_ITEMS).
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)

HTTP_REQUESTS = Counter(
    "wabapool_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_REQUEST_DURATION = Histogram(
    "wabapool_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["route"],
    buckets=LATENCY_BUCKETS_SECONDS,
    registry=REGISTRY,
)

DEDUCTIONS = Counter(
    "wabapool_deductions",
    "Deductions by result (applied, replayed, rejected) and rejection code (empty unless rejected).",
    ["result", "code"],
    registry=REGISTRY,
)
DEDUCTED_AMOUNT = Counter(
    "wabapool_deducted_amount_minor",
    "Amount deducted, in minor currency units, by the bucket it came from (quota_type).",
    ["quota_type"],
    registry=REGISTRY,
)
DEDUCTION_GROUPS = Counter(
    "wabapool_deduction_groups",
    "Groups of deductions applied, by path: unlocked (a lone deduction written without the pool's lock),"
    " unlocked_moved (tried so, its pool changed meanwhile: then locked), unlocked_declined (tried so, it needed"
    " the lock: a refusal or a repeat, a new cycle, a moved threshold, a capped WABA), locked (the group's"
    " transaction).",
    ["path"],
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "wabapool_deduction_batch_size",
    "Items per batch deduction request.",
    buckets=BATCH_SIZE_BUCKETS,
    registry=REGISTRY,
)
DEDUCTION_DURATION = Histogram(
    "wabapool_deduction_duration_seconds",
    "Time the engine takes to apply a deduction request, by mode (single or batch).",
    ["mode"],
    buckets=LATENCY_BUCKETS_SECONDS,
    registry=REGISTRY,
)

CACHE_HITS = Counter("wabapool_cache_hits", "Balance reads answered from the cache.", registry=REGISTRY)
CACHE_MISSES = Counter("wabapool_cache_misses", "Balance reads the cache could not answer.", registry=REGISTRY)
CACHE_ERRORS = Counter(
    "wabapool_cache_errors",
    "Cache operations that failed because the cache (Redis) was unavailable, by operation.",
    ["operation"],
    registry=REGISTRY,
)
CACHE_WRITE_THROUGHS = Counter(
    "wabapool_cache_write_throughs",
    "Balances handed to the cache by the change that made them, by outcome: stored, fenced (kept only as the last"
    " known value after an invalidation), superseded (a newer balance was stored already).",
    ["outcome"],
    registry=REGISTRY,
)
CACHE_STALE_SERVED = Counter(
    "wabapool_cache_stale_served",
    "Balance reads answered with the last known value because the database was past its timeout.",
    registry=REGISTRY,
)

OUTBOX_LAG = Gauge(
    "wabapool_outbox_lag_seconds",
    "Age of the oldest event not yet delivered (0 when the outbox is empty).",
    registry=REGISTRY,
)
WEBHOOK_FAILURES = Counter(
    "wabapool_webhook_failures",
    "Webhook delivery attempts that failed, by reason (timeout, connection, http_4xx, http_5xx, dead_letter).",
    ["reason"],
    registry=REGISTRY,
)

# Seconds from sending a webhook to its answer; up to the default 15 s timeout.
WEBHOOK_LATENCY_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
WEBHOOK_DELIVERIES = Counter(
    "wabapool_webhook_deliveries",
    "Webhook attempts by result (delivered, retry, dead, skipped, lost_lease) and status class (2xx..5xx, none).",
    ["result", "status_class"],
    registry=REGISTRY,
)
WEBHOOK_LATENCY = Histogram(
    "wabapool_webhook_latency_seconds",
    "Time from sending a webhook attempt to the receiver's answer (or the failure).",
    buckets=WEBHOOK_LATENCY_BUCKETS_SECONDS,
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "wabapool_webhook_dead_letters", "Events dead-lettered after their last attempt.", registry=REGISTRY
)
CYCLE_RESETS = Counter(
    "wabapool_cycle_resets",
    "Billing cycles reset by the worker's scheduler (one per company and cycle).",
    registry=REGISTRY,
)


def record_webhook_delivery(result: str, status_class: str) -> None:
    """Count one webhook attempt's outcome."""
    WEBHOOK_DELIVERIES.labels(result=result, status_class=status_class).inc()


# Labelled children by label values: `labels()` costs more than the increment itself on the hot path.
_deduction_counters: dict[tuple[str, str], Counter] = {}
_amount_counters: dict[str, Counter] = {}


def record_deductions(outcomes: Mapping[tuple[str, str], int], amounts: Mapping[str, int]) -> None:
    """Count deduction outcomes by (result, rejection code or ''), and applied money by quota type."""
    for labels, count in outcomes.items():
        counter = _deduction_counters.get(labels)
        if counter is None:
            counter = _deduction_counters[labels] = DEDUCTIONS.labels(result=labels[0], code=labels[1])
        counter.inc(count)
    for quota_type, amount_minor in amounts.items():
        counter = _amount_counters.get(quota_type)
        if counter is None:
            counter = _amount_counters[quota_type] = DEDUCTED_AMOUNT.labels(quota_type=quota_type)
        counter.inc(amount_minor)


def render() -> tuple[bytes, str]:
    """The registry in the Prometheus text format: (body, content type)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


ANALYTICS_EVENTS = Counter(
    "wabapool_analytics_events",
    "Analytics events sent by the page, by allow-listed name and its closed properties (billing_version, trigger).",
    ["name", "billing_version", "trigger"],
    registry=REGISTRY,
)
