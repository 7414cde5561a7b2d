"""One HTTP attempt of one webhook: POST to the checked address, no redirects, a timeout.

Translates every transport failure into an Attempt (status or error text); nothing here raises for
an answer the receiver gave. The httpx transport is the seam tests may replace.

The receiver's answer is streamed and read only up to RESPONSE_BODY_MAX_BYTES: Standard Webhooks
decides on the status alone, so the body is only a hint for the dead letter, and a receiver that
answers hundreds of megabytes must not cost the worker that memory. The whole attempt, body
included, is bounded by the timeout (a receiver trickling its answer cannot hold it longer).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from wabapool.domain.limits import WEBHOOK_ANSWER_MAX_BYTES
from wabapool.service.ssrf import Target

# What we keep of an error answer's body for the dead letter's last_error.
ERROR_BODY_MAX_CHARS = 200
# Connections kept open to receivers across deliveries.
MAX_CONNECTIONS = 64
# Bytes of a receiver's answer the worker reads at most (domain/limits.py): enough for any error text worth
# keeping, and to drain a normal answer so its connection is reused; past it the connection is dropped unread.
RESPONSE_BODY_MAX_BYTES = WEBHOOK_ANSWER_MAX_BYTES


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one POST: an HTTP status, or an error before any answer."""

    status: int | None
    error: str | None
    retry_after: str | None
    elapsed_seconds: float

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def status_class(self) -> str:
        """`2xx`…`5xx`, or `none` when no answer came."""
        return f"{self.status // 100}xx" if self.status is not None else "none"

    @property
    def reason(self) -> str:
        """A bounded label for failures: timeout, connection, http_3xx, http_4xx, http_5xx."""
        if self.status is not None:
            return f"http_{self.status_class}"
        return "timeout" if self.error and self.error.startswith("timeout") else "connection"


class Sender:
    """Posts webhook attempts over one pooled httpx client."""

    def __init__(self, *, timeout_seconds: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._timeout_seconds = timeout_seconds
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,  # a redirect could lead into our network: it counts as a failure
            transport=transport,
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS),
            trust_env=False,  # no proxy from the environment between us and the checked address
        )

    async def post(self, target: Target, *, headers: dict[str, str], body: bytes) -> Attempt:
        """One attempt to the checked address, with the URL's host for Host and TLS (SNI, certificate)."""
        started = time.perf_counter()
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            async with asyncio.timeout(self._timeout_seconds):
                status, retry_after, head = await self._exchange(target, headers, body, extensions)
        except (httpx.TimeoutException, TimeoutError) as exc:
            return Attempt(None, f"timeout: {type(exc).__name__}", None, time.perf_counter() - started)
        except httpx.HTTPError as exc:
            return Attempt(None, f"connection: {type(exc).__name__}: {exc}"[:500], None, time.perf_counter() - started)
        elapsed = time.perf_counter() - started
        error = None
        if not 200 <= status < 300:
            error = f"HTTP {status}: {head.decode('utf-8', 'replace')[:ERROR_BODY_MAX_CHARS]}"
        return Attempt(status, error, retry_after, elapsed)

    async def _exchange(
        self, target: Target, headers: dict[str, str], body: bytes, extensions: dict[str, str]
    ) -> tuple[int, str | None, bytes]:
        """The status, Retry-After and at most RESPONSE_BODY_MAX_BYTES of the answer (the rest is never read)."""
        async with self._client.stream(
            "POST",
            target.connect_url,
            content=body,
            # Raw bytes are what is counted: no compressed answer that inflates past the cap inside one chunk.
            headers={**headers, "host": target.host_header, "accept-encoding": "identity"},
            extensions=extensions,
        ) as response:
            head = bytearray()
            async for chunk in response.aiter_raw():
                head += chunk
                if len(head) > RESPONSE_BODY_MAX_BYTES:
                    break  # leaving the block closes the connection with the rest unread
            return response.status_code, response.headers.get("retry-after"), bytes(head[:RESPONSE_BODY_MAX_BYTES])

    async def close(self) -> None:
        await self._client.aclose()
