"""The worker inside `wabapool serve --demo`: a thread with its own event loop beside the server.

The demo company's webhook points at the app's own demo receiver (`/demo/webhooks`), so the embedded
default delivers, verifies and shows events with nothing else running. The worker itself is wired by
`wabapool.bootstrap.opened_worker`, handed in as `open_worker`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import structlog

from wabapool.worker.runner import Worker

log = structlog.get_logger("wabapool.worker")
STOP_TIMEOUT_SECONDS = 10.0


@dataclass
class EmbeddedWorker:
    """A running worker thread; `stop()` ends it after its current round."""

    open_worker: Callable[[], AbstractAsyncContextManager[Worker]]
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> EmbeddedWorker:
        self._thread = threading.Thread(target=self._run, name="wabapool-worker", daemon=True)
        self._thread.start()
        self._ready.wait(STOP_TIMEOUT_SECONDS)
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.open_worker() as worker:
            self._ready.set()
            await worker.run(self._stop)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS)
