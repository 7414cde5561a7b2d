"""Process settings for a long-running process: its log format and its garbage collector.

Logs are JSON lines on stdout at `WABAPOOL_LOG_LEVEL`, the same in the API and the worker.

A deduction allocates a dozen short-lived objects; with CPython's default
collector thresholds (700 allocations) a busy server runs a young-generation
collection every few deductions and, now and then, a full one over every
module, schema and route it has loaded. Freezing what exists at start-up
takes those objects out of every later collection, and a higher first
threshold collects the young ones in larger, rarer passes. Nothing is
leaked: cycles are still collected, only less often.
"""

from __future__ import annotations

import gc
import logging
import os

import structlog

# Young-generation threshold: objects allocated (minus freed) between young collections.
YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Call once, after start-up has imported and built everything long-lived."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def _add_pid(_: object, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """Which process wrote the line: `serve --workers N` runs N server processes."""
    event["pid"] = os.getpid()
    return event


def configure_logging(level: str | None = None) -> None:
    """JSON lines on stdout, each with its process id; secrets never reach a log call."""
    name = (level or os.environ.get("WABAPOOL_LOG_LEVEL") or "INFO").upper()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_pid,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, name, logging.INFO)),
        cache_logger_on_first_use=True,
    )
