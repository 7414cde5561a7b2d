"""When to send a call again, and how long to wait first.

Every call of the internal API is idempotent: a deduction on its
`unique_code`, a refund on its `refund_code`, a payment on its
`payment_reference`, provisioning as upserts, reads as reads. So sending the
exact same body again is safe: the service replays the first result instead
of applying it twice. We retry only what may succeed on a second try without
any change: timeouts, connection errors, 429 and 502/503/504. Any other
answer is final.

The waits are exponential with full jitter (uniform in [0, ceiling)), so a
fleet of senders that failed together does not come back together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from wabapool.client._exceptions import TransportError

# A sender holds a message while it waits for the deduction: bounded retries
# keep the worst case (attempts × timeout + waits) to seconds, not minutes.
MAX_RETRIES_LIMIT = 10
# One wait between attempts never grows past this, whatever the attempt number.
MAX_BACKOFF_SECONDS = 2.0
# We honour the service's Retry-After, but never let it stall delivery for long.
RETRY_AFTER_MAX_SECONDS = 5.0

RETRYABLE_STATUS_CODES = frozenset({429, 502, 503, 504})
# RemoteProtocolError: the server dropped the connection before it answered.
RETRYABLE_EXCEPTIONS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to retry and how long to wait; `random` returns a float in [0, 1)."""

    max_retries: int
    backoff_seconds: float
    random: Callable[[], float]

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise TypeError("max_retries must be an int")
        if not 0 <= self.max_retries <= MAX_RETRIES_LIMIT:
            raise ValueError(f"max_retries must be between 0 and {MAX_RETRIES_LIMIT}")
        if not 0 <= self.backoff_seconds <= MAX_BACKOFF_SECONDS:
            raise ValueError(f"backoff_seconds must be between 0 and {MAX_BACKOFF_SECONDS}")

    def backoff_seconds_for(self, retry: int) -> float:
        """The wait before retry number `retry` (0-based): full jitter under a capped exponential."""
        ceiling_seconds = min(MAX_BACKOFF_SECONDS, self.backoff_seconds * 2.0**retry)
        return self.random() * ceiling_seconds

    def start(self) -> Attempts:
        """Fresh retry bookkeeping for one call."""
        return Attempts(self)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The service's Retry-After in seconds, capped; None when absent or an HTTP date."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_SECONDS)


class Attempts:
    """The retry state of one call: says how long to wait, or that the last outcome is final."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.retries = 0

    @property
    def exhausted(self) -> bool:
        return self.retries >= self.policy.max_retries

    def after_error(self, exc: httpx.HTTPError) -> float:
        """The wait before the next attempt; raises TransportError when no retry is left or allowed."""
        if isinstance(exc, RETRYABLE_EXCEPTIONS) and not self.exhausted:
            return self._next(None)
        code = "timeout" if isinstance(exc, httpx.TimeoutException) else "transport_error"
        attempts = self.retries + 1
        raise TransportError(
            code,
            f"no answer from the service after {attempts} attempt(s): {exc!r}",
            {"attempts": attempts, "cause": type(exc).__name__},
        ) from exc

    def after_response(self, response: httpx.Response) -> float | None:
        """The wait before the next attempt, or None when this answer is the outcome."""
        if response.status_code not in RETRYABLE_STATUS_CODES or self.exhausted:
            return None
        return self._next(retry_after_seconds(response))

    def _next(self, retry_after: float | None) -> float:
        delay_seconds = self.policy.backoff_seconds_for(self.retries) if retry_after is None else retry_after
        self.retries += 1
        return delay_seconds
