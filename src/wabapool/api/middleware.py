"""One pure-ASGI middleware: request id, body limit, access log and request metrics.

Pure ASGI (not BaseHTTPMiddleware) because it sits on the deduction hot path.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wabapool.api.errors import envelope

log = structlog.get_logger("wabapool.http")
REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")


class BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, observe: Callable[[str, str, int, float], None]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.observe = observe  # (method, route template, status, seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(REQUEST_ID_HEADER, b"")
        request_id = incoming.decode() if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder = [500]
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await self._too_large(send, request_id)
            self._finish(scope, 413, started, request_id)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except BodyTooLarge:
            await self._too_large(send, request_id)
            status_holder[0] = 413
        finally:
            self._finish(scope, status_holder[0], started, request_id)

    async def _too_large(self, send: Send, request_id: str) -> None:
        body = json.dumps(
            envelope(
                "payload_too_large",
                f"the body is larger than {self.max_body_bytes} bytes",
                {"max_bytes": self.max_body_bytes},
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _finish(self, scope: Scope, status: int, started: float, request_id: str) -> None:
        seconds = time.perf_counter() - started
        template = _route_template(scope)
        self.observe(scope["method"], template, status, seconds)
        state = scope.get("state", {})
        fields = {
            "request_id": request_id,
            "method": scope["method"],
            "route": template,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        }
        if "caller" in state:
            fields["caller"] = state["caller"]
        if "company_id" in state:
            fields["company_id"] = state["company_id"]
        if status >= 500:
            log.error("request", **fields)
        elif status >= 400:
            log.info("request", **fields)
        else:
            log.info("request", **fields)


def _route_template(scope: Scope) -> str:
    """The matched route's full path template (with its router prefix), never the raw path."""
    effective = (scope.get("fastapi") or {}).get("effective_route_context")
    template = getattr(effective, "path_format", None) or getattr(scope.get("route"), "path", None)
    return template or "unmatched"
