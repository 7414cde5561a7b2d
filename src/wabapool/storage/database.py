"""Engines for PostgreSQL and SQLite, and the unit of work that owns every commit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_POOL_SIZE = 20
POSTGRES_MAX_OVERFLOW = 20


def async_url(url: str) -> str:
    """`sqlite:///f.db` / `postgresql://…` (the configuration's form) → the async driver's URL."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+aiosqlite"):
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if parsed.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE: one writer at a time, readers never blocked."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.info.get("write", True) else "BEGIN")


class Database:
    """One engine and the transaction boundary every use case goes through."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = async_url(url)
        is_sqlite = self.url.startswith("sqlite")
        options: dict[str, Any] = {"echo": echo}
        if not is_sqlite:
            # No ping before each checkout: it cost a round trip per transaction (~250 µs CPU of a
            # deduction group's ~330 µs bare transaction). A connection the server dropped fails
            # one attempt instead; SQLAlchemy then replaces every older connection of the pool.
            options |= {"pool_size": POSTGRES_POOL_SIZE, "max_overflow": POSTGRES_MAX_OVERFLOW}
        self.engine = create_async_engine(self.url, **options)
        self.dialect = self.engine.dialect.name
        if is_sqlite:
            _configure_sqlite(self.engine)
        # SQLite has one writer: queue writers in-process instead of spinning on SQLITE_BUSY.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if is_sqlite else None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """Commit when the block ends normally; roll back on any exception."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock, self.engine.begin() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection (no write lock on SQLite)."""
        async with self.engine.connect() as connection:
            if self.is_sqlite:
                connection.sync_connection.info["write"] = False  # type: ignore[union-attr]
            try:
                yield connection
            finally:
                if self.is_sqlite:
                    connection.sync_connection.info["write"] = True  # type: ignore[union-attr]
                await connection.rollback()

    async def dispose(self) -> None:
        await self.engine.dispose()
