"""A real webhook receiver on loopback for the worker's tests: verifies every delivery with `standardwebhooks`.

It answers from a script of status codes (then `default_status`), optionally holding a request open,
and records each request with whether its signature verified.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a killed worker) is expected here, not an error to print."""


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int
    received_at: float

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """Start with `with Receiver() as receiver:`; set `secret` before deliveries arrive."""

    secret: str | None = None
    script: list[int] = field(default_factory=list)
    default_status: int = 200
    extra_headers: dict[str, str] = field(default_factory=dict)
    hold_seconds: float = 0.0  # how long to hold the next request open before answering
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver._handle(self, body)

            def log_message(self, *_: Any) -> None:
                return

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        verified = False
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        with self._lock:
            hold, self.hold_seconds = self.hold_seconds, 0.0
            status = self.script.pop(0) if self.script else self.default_status
            self.received.append(Received(headers, body, verified, status, time.monotonic()))
        if hold:
            time.sleep(hold)  # a receiver slow to answer is the behaviour the caller tests, not a wait
        handler.send_response(status)
        for name, value in self.extra_headers.items():
            handler.send_header(name, value)
        handler.send_header("content-length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hooks/billing"

    def types(self) -> list[str]:
        return [r.event["type"] for r in self.received if 200 <= r.status < 300]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
