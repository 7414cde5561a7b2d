"""The check `serve` makes before it starts: may this process seal and open personal data with its keys?

Outside demo a missing, malformed or development key set is refused; in every mode a key set that lacks a
key the stored data is sealed under. Then the keys this process writes with are recorded. The keys and the
database come from the composition root (`bootstrap`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime

from wabapool import bootstrap
from wabapool.config import Settings
from wabapool.pii import PiiKeyError


def startup_refusal(configured: Settings, *, demo: bool = False) -> str | None:
    """For `serve`: None when it may start, else the message to print (exit code 2). (`wabapool worker`
    checks the key set itself and, with its first reads, the stored data against it: `cli/worker.py`.)

    Outside demo a missing or malformed key set is refused; in every mode a key set that lacks a key the
    stored data is sealed under (named by key id). Then the keys this process writes with are recorded.
    """
    try:
        keys = bootstrap.sealer(configured, demo=demo)
    except PiiKeyError as exc:
        return str(exc)

    from wabapool.service.pii_keys import check_stored_keys

    async def check() -> None:
        async with bootstrap.opened_database(configured) as opened:
            await check_stored_keys(opened, keys, at=datetime.now(UTC))

    try:
        _run(check)
    except PiiKeyError as exc:
        return str(exc)
    return None


def _run(step: Callable[[], Coroutine[object, object, None]]) -> None:
    """asyncio.run, in a thread of its own when the caller already runs an event loop (tests, notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(step())
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, step()).result()
