"""Slow clients are cut off (SPEC section 5): headers and body each have a deadline.

uvicorn bounds the wait between requests (`timeout_keep_alive`) but not the
time a client takes to send a request: one that sends a byte a second holds a
connection, and a slot of everything behind it, forever. So:

- `HeaderTimeoutProtocol` (uvicorn's httptools protocol) closes a connection
  whose request line and headers are not complete HEADER_READ_TIMEOUT_SECONDS
  after the connection opened or its previous response ended;
- `BodyReadTimeout` (ASGI) answers 408 `request_timeout` (and closes) when the
  body is not complete BODY_READ_TIMEOUT_SECONDS after the app first asks for it.
"""

from __future__ import annotations

import asyncio
import json
import os
from asyncio import TimerHandle, Transport

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from wabapool.api.errors import envelope
from wabapool.domain.limits import BODY_READ_TIMEOUT_SECONDS, HEADER_READ_TIMEOUT_SECONDS

HEADER_TIMEOUT_VARIABLE = "WABAPOOL_HEADER_TIMEOUT_SECONDS"


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's protocol with a deadline on each request's headers (`WABAPOOL_HEADER_TIMEOUT_SECONDS`)."""

    header_timeout_seconds = float(os.environ.get(HEADER_TIMEOUT_VARIABLE) or HEADER_READ_TIMEOUT_SECONDS)

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: TimerHandle | None = None
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:  # a pipelined request has its headers
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self.header_timeout_seconds, self._headers_too_slow)

    def _disarm(self) -> None:
        deadline = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


class BodyTimedOut(Exception):
    pass


class BodyReadTimeout:
    """Pure ASGI: the request body must be complete `body_timeout_seconds` after the app first asks for it."""

    def __init__(self, app: ASGIApp, *, body_timeout_seconds: float = BODY_READ_TIMEOUT_SECONDS) -> None:
        self.app = app
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        body_complete = False
        started = False

        async def timed_receive() -> Message:
            nonlocal deadline, body_complete
            if body_complete:  # after the body, only the disconnect is waited for: no deadline
                return await receive()
            if deadline is None:
                deadline = loop.time() + self.body_timeout_seconds
            try:
                async with asyncio.timeout_at(deadline):
                    message: Message = await receive()
            except TimeoutError as exc:
                raise BodyTimedOut from exc
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_complete = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed_receive, tracking_send)
        except BodyTimedOut:
            if started:
                raise  # a response already under way: the server cuts the connection
            await self._request_timeout(send)

    async def _request_timeout(self, send: Send) -> None:
        body = json.dumps(
            envelope(
                "request_timeout",
                f"the request body did not arrive within {self.body_timeout_seconds:g} s",
                {"timeout_seconds": self.body_timeout_seconds},
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 408,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
