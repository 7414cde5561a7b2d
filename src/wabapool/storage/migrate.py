"""Run Alembic migrations programmatically (the CLI and the tests use this)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _upgrade_sync(url: str, revision: str) -> None:
    command.upgrade(alembic_config(url), revision)


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (works inside or outside a running loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _upgrade_sync(url, revision)
        return
    # env.py runs its own event loop; from inside a loop, give it a thread.
    import threading

    failure: list[BaseException] = []

    def target() -> None:
        try:
            _upgrade_sync(url, revision)
        except BaseException as exc:  # re-raised below in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)
