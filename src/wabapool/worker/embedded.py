"""The worker inside `wabapool serve --demo`: a thread with its own event loop beside the server.

The demo company's webhook points at the app's own demo receiver (`/demo/webhooks`), so the embedded
default delivers, verifies and shows events with nothing else running.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import structlog

from wabapool.config import Settings
from wabapool.pii import DEVELOPMENT_KEYS, PiiSealer

log = structlog.get_logger("wabapool.worker")
STOP_TIMEOUT_SECONDS = 10.0


async def point_webhook(settings: Settings, company_id: int, url: str) -> None:
    """Set the company's webhook to `url` with a fresh secret (the demo receiver looks the secret up)."""
    from wabapool.service import webhooks
    from wabapool.storage.database import Database

    database = Database(settings.database_url)
    try:
        await webhooks.set_webhook(database, demo_sealer(settings), company_id, url=url, secret=None)
    finally:
        await database.dispose()


def demo_sealer(settings: Settings) -> PiiSealer:
    """`--demo` may run on the built-in development key (never outside it)."""
    return PiiSealer(settings.pii_keys or DEVELOPMENT_KEYS)


@dataclass
class EmbeddedWorker:
    """A running worker thread; `stop()` ends it after its current round."""

    settings: Settings
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
        from wabapool.service import BillingService
        from wabapool.storage.database import Database
        from wabapool.worker.runner import build_worker

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        database = Database(self.settings.database_url)
        sealer = demo_sealer(self.settings)
        worker = build_worker(
            self.settings, database=database, sealer=sealer, service=BillingService(database, sealer=sealer)
        )
        self._ready.set()
        try:
            await worker.run(self._stop)
        finally:
            await worker.relay.close()
            await database.dispose()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS)
