"""The loopback webhook receiver of the fault run: verifies each Standard Webhooks signature, records event ids.

Its answer is what the nemesis makes it: `ok` (204), `fail` (500), `hang` (holds the connection past the
worker's timeout), `slow` (answers 200 after a pause under the timeout), `huge` (a 200 with a body of many
megabytes). It is a plain asyncio server in a thread of its own, so the run's process can read what it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field

from standardwebhooks import Webhook

from bench.faults_cluster import free_port

MODES = ("ok", "fail", "hang", "slow", "huge")
# Longer than the worker's timeout (WABAPOOL_WEBHOOK_TIMEOUT_SECONDS in the cluster): the attempt must time out.
HANG_SECONDS = 30.0
# Under the worker's timeout: the attempt succeeds, late.
SLOW_SECONDS = 1.5
# A receiver that answers far more than anyone needs; the worker must not hold it all.
HUGE_BODY_BYTES = 64 * 1024 * 1024
HUGE_CHUNK = b"x" * (1024 * 1024)
# A webhook body is a few hundred bytes; anything past this is not one of ours.
MAX_REQUEST_BYTES = 1024 * 1024
# A request's head and body arrive at once on loopback; a stalled client is dropped.
READ_DEADLINE_SECONDS = 10.0
STARTUP_DEADLINE_SECONDS = 10.0


@dataclass
class Receiver:
    """Serves on 127.0.0.1:`port`; `seen` holds every verified event id, `forged` every failed verification."""

    secret: str
    port: int = field(default_factory=free_port)
    mode: str = "ok"
    seen: set[str] = field(default_factory=set)
    deliveries: int = 0
    forged: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="faults-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(STARTUP_DEADLINE_SECONDS):
            raise TimeoutError("the webhook receiver did not start")

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown receiver mode {mode!r}")
        self.mode = mode

    def snapshot(self) -> set[str]:
        with self._lock:
            return set(self.seen)

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            loop.run_until_complete(_cancel_all())
            loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await asyncio.wait_for(_read_request(reader), READ_DEADLINE_SECONDS)
                if request is None:
                    return
                headers, body = request
                await self._answer(headers, body, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(self, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        with self._lock:
            self.answers[mode] = self.answers.get(mode, 0) + 1
        if mode == "fail":
            await _write(writer, 500, b"receiver failing on purpose")
            return
        if mode == "hang":
            await asyncio.sleep(HANG_SECONDS)
            raise ConnectionError("hung up")
        if mode == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        try:
            event = Webhook(self.secret).verify(body, headers)
        except Exception:
            with self._lock:
                self.forged += 1
            await _write(writer, 400, b"bad signature")
            return
        with self._lock:
            self.deliveries += 1
            self.seen.add(str(event.get("id") or headers.get("webhook-id")))
            self.seen.add(headers.get("webhook-id", ""))
        if mode == "huge":
            head = f"HTTP/1.1 200 OK\r\ncontent-length: {HUGE_BODY_BYTES}\r\ncontent-type: text/plain\r\n\r\n"
            writer.write(head.encode())
            for _ in range(HUGE_BODY_BYTES // len(HUGE_CHUNK)):
                writer.write(HUGE_CHUNK)
                await writer.drain()
            return
        await _write(writer, 204, b"")


async def _cancel_all() -> None:
    """End the connections still open (a hung answer) so the loop closes cleanly."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _read_request(reader: asyncio.StreamReader) -> tuple[dict[str, str], bytes] | None:
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if length > MAX_REQUEST_BYTES:
        raise ValueError("request too large")
    body = await reader.readexactly(length) if length else b""
    return headers, body


async def _write(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    reason = {200: "OK", 204: "No Content", 400: "Bad Request", 500: "Internal Server Error"}[status]
    writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
