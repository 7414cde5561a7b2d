"""Run Alembic migrations programmatically (the CLI and the tests use this)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _outside_the_loop(step: Callable[[], None]) -> None:
    """env.py runs an event loop of its own; from inside a running loop, give it a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        step()
        return
    failure: list[BaseException] = []

    def target() -> None:
        try:
            step()
        except BaseException as exc:  # re-raised below in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`."""
    _outside_the_loop(lambda: command.upgrade(alembic_config(url), revision))


def downgrade(url: str, revision: str) -> None:
    """Take the database at `url` back to `revision` (refused where the data does not allow it)."""
    _outside_the_loop(lambda: command.downgrade(alembic_config(url), revision))
