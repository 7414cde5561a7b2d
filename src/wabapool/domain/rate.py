"""The token bucket, as pure arithmetic on plain numbers (the stores in `rate_limit.py` keep its state).

A bucket holds at most `burst` tokens and refills at `rate_per_second`; a
request takes one. A request that finds less than one token is refused and
told how long until one is there. Several buckets (the company's, the
token's) are taken all or none: a refusal by one takes nothing from the
others, so a refused request costs the caller nothing but the wait.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BucketRule:
    """How fast a bucket refills and how many requests it lets through at once."""

    rate_per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not self.rate_per_second > 0 or self.burst < 1:
            raise ValueError("a bucket refills at a positive rate and holds at least one token")


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    at_seconds: float  # when `tokens` was true


def refilled(bucket: Bucket | None, rule: BucketRule, now_seconds: float) -> float:
    """The tokens a bucket holds now; a bucket never seen is full."""
    if bucket is None:
        return float(rule.burst)
    elapsed = max(0.0, now_seconds - bucket.at_seconds)
    return min(float(rule.burst), bucket.tokens + elapsed * rule.rate_per_second)


def wait_seconds(tokens: float, rule: BucketRule) -> float:
    """How long until a bucket holding `tokens` holds one; 0 when it holds one now."""
    return 0.0 if tokens >= 1 else (1 - tokens) / rule.rate_per_second


def take(buckets: list[Bucket | None], rules: list[BucketRule], now_seconds: float) -> tuple[float, list[Bucket]]:
    """One token from every bucket, or none: (seconds to wait, 0 when taken; the buckets as they are now)."""
    levels = [refilled(bucket, rule, now_seconds) for bucket, rule in zip(buckets, rules, strict=True)]
    wait = max(wait_seconds(level, rule) for level, rule in zip(levels, rules, strict=True))
    taken = 0 if wait > 0 else 1
    return wait, [Bucket(level - taken, now_seconds) for level in levels]


def retry_after_header(wait: float) -> str:
    """Whole seconds for Retry-After, rounded up (never 0 for a refusal)."""
    return str(max(1, math.ceil(wait)))
