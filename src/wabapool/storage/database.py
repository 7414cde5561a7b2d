"""Engines for PostgreSQL and SQLite, and the unit of work that owns every commit."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wabapool.storage.errors import OutcomeUnknown, StorageError, lost_connection_unseen, translate

CommitHook = Callable[[Literal["before", "after"], AsyncConnection], Awaitable[None]]

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Two pools on PostgreSQL, so that reads can never starve the writes (SPEC section 5, fair sharing): the write
# pool serves every transaction (deductions, refunds, top-ups, provisioning); the read pool serves `read()`
# (logs, the CSV export's pages, usage, events, balance loads). However many exports and reads run, and
# however slowly their clients read, they wait on the read pool's connections, never on the write pool's.
POSTGRES_POOL_SIZE = 20
POSTGRES_MAX_OVERFLOW = 20
# The read pool: ten connections (each read is one short statement or two; an export holds one for a page's
# read at a time), ten more under a burst. A read that waits POSTGRES_READ_POOL_WAIT_SECONDS for one answers
# 503 (`unavailable`, Retry-After) instead of queueing without bound.
POSTGRES_READ_POOL_SIZE = 10
POSTGRES_READ_MAX_OVERFLOW = 10
POSTGRES_READ_POOL_WAIT_SECONDS = 5.0
# How long a transaction waits for a row lock (a pool held by another process) before it gives up
# and answers 503: a sender waits seconds at most, never minutes behind a stuck transaction.
POSTGRES_LOCK_TIMEOUT_MS = 2_000
# How long one statement may run: a group's writes take milliseconds; past this something is wrong,
# and holding the pool lock longer would stall every sender of the company.
POSTGRES_STATEMENT_TIMEOUT_MS = 10_000


# `?pooling=transaction` on a PostgreSQL URL: the service talks to PgBouncer in transaction pooling mode
# (docs/scale-out.md). Each transaction may then run on a different server connection, so nothing may
# outlive one: no named prepared statement reused across transactions, no session setting sent at connect.
POOLING_PARAMETER = "pooling"
SESSION_POOLING = "session"
TRANSACTION_POOLING = "transaction"


def pooling_of(url: str) -> str:
    """How the server connections behind `url` are shared: "session" (the default, direct) or "transaction"."""
    value = make_url(url).query.get(POOLING_PARAMETER, SESSION_POOLING)
    mode = value if isinstance(value, str) else value[-1]
    if mode not in (SESSION_POOLING, TRANSACTION_POOLING):
        raise ValueError(f"{POOLING_PARAMETER}={mode!r}: expected {SESSION_POOLING!r} or {TRANSACTION_POOLING!r}")
    return mode


def async_url(url: str) -> str:
    """`sqlite:///f.db` / `postgresql://…` (the configuration's form) → the async driver's URL."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+aiosqlite"):
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if parsed.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        parsed = parsed.difference_update_query([POOLING_PARAMETER])
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")


def postgres_connect_args(url: str, *, lock_timeout_ms: int, statement_timeout_ms: int) -> dict[str, object]:
    """asyncpg's connection arguments for `url`'s pooling.

    Direct (or session pooling): the timeouts are the connection's settings, sent at connect.
    Transaction pooling (PgBouncer 1.18 here; before 1.21 it cannot keep prepared statements apart):
    asyncpg's statement cache off (its statements go unnamed, parsed each time), SQLAlchemy's cache of
    prepared statements off and each one named uniquely (prepared and run inside one transaction, so on
    one server connection), and no settings at connect (PgBouncer refuses unknown startup parameters, and a
    `SET` would stay on a server connection other clients get): the timeouts are then the server's, set
    per role or database (`ALTER ROLE … SET lock_timeout`), or by PgBouncer's `connect_query`.
    """
    if pooling_of(url) == TRANSACTION_POOLING:
        return {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__wabapool_{uuid.uuid4().hex}__",
        }
    return {
        "server_settings": {
            "lock_timeout": str(lock_timeout_ms),
            "statement_timeout": str(statement_timeout_ms),
        }
    }


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
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.info.get("write", True) else "BEGIN")


def _share_disconnects(*engines: AsyncEngine) -> None:
    """A connection found dead in one pool means the server dropped them all (a restart, a failover): the
    failing pool replaces its older connections itself, and the other pools are replaced too, so each pool
    costs one failed attempt after a restart, not one per pool (or per pooled connection without a ping)."""
    for engine in engines:

        @event.listens_for(engine.sync_engine, "handle_error")
        def _on_error(context: ExceptionContext, failing: AsyncEngine = engine) -> None:
            if context.is_disconnect:
                for other in engines:
                    if other is not failing:
                        other.sync_engine.dispose(close=False)  # a fresh pool; checked-out connections finish


class Database:
    """One engine and the transaction boundary every use case goes through."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        lock_timeout_ms: int = POSTGRES_LOCK_TIMEOUT_MS,
        statement_timeout_ms: int = POSTGRES_STATEMENT_TIMEOUT_MS,
        commit_hook: CommitHook | None = None,
        read_pool_wait_seconds: float = POSTGRES_READ_POOL_WAIT_SECONDS,
    ) -> None:
        """`commit_hook` is the fault-injection seam of the tests: called with "before" and "after" around
        each commit, inside its failure handling (None in production)."""
        self.url = async_url(url)
        is_sqlite = self.url.startswith("sqlite")
        self.pooling = SESSION_POOLING if is_sqlite else pooling_of(url)
        options: dict[str, Any] = {"echo": echo}
        if not is_sqlite:
            # No ping before each checkout: it cost a round trip per transaction (~250 µs CPU of a
            # deduction group's ~330 µs bare transaction). A connection the server dropped fails
            # one attempt instead; SQLAlchemy then replaces every older connection of the pool.
            options |= {
                "connect_args": postgres_connect_args(
                    url, lock_timeout_ms=lock_timeout_ms, statement_timeout_ms=statement_timeout_ms
                ),
            }
            self.engine = create_async_engine(
                self.url, pool_size=POSTGRES_POOL_SIZE, max_overflow=POSTGRES_MAX_OVERFLOW, **options
            )
            self.read_engine = create_async_engine(
                self.url,
                pool_size=POSTGRES_READ_POOL_SIZE,
                max_overflow=POSTGRES_READ_MAX_OVERFLOW,
                pool_timeout=read_pool_wait_seconds,
                **options,
            )
            _share_disconnects(self.engine, self.read_engine)
        else:  # one file: readers never block its one writer (WAL), one engine serves both
            self.engine = self.read_engine = create_async_engine(self.url, **options)
        self._commit_hook = commit_hook
        self.dialect = self.engine.dialect.name
        if is_sqlite:
            _configure_sqlite(self.engine)
        # SQLite has one writer: queue writers in-process instead of spinning on SQLITE_BUSY.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if is_sqlite else None

    @property
    def engines(self) -> tuple[AsyncEngine, ...]:
        """The write engine, then the read engine when it is another one."""
        return (self.engine,) if self.read_engine is self.engine else (self.engine, self.read_engine)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """Commit when the block ends normally; roll back on any exception.

        Driver failures come out as storage errors (`storage.errors`): one
        before the commit means nothing was written; a failed or interrupted
        commit is OutcomeUnknown, whatever the driver said.
        """
        lock = self._write_lock or contextlib.nullcontext()
        async with lock:
            try:
                connection = await self.engine.connect()
                await connection.begin()
            except Exception as exc:
                raise translate(exc) from exc
            try:
                try:
                    yield connection
                except BaseException as exc:
                    translated = await self._failed(connection, exc)
                    with contextlib.suppress(Exception):
                        await connection.rollback()
                    if translated is exc:
                        raise
                    raise translated from exc
                try:
                    if self._commit_hook is not None:
                        await self._commit_hook("before", connection)
                    await connection.commit()
                    if self._commit_hook is not None:
                        await self._commit_hook("after", connection)
                except asyncio.CancelledError:
                    raise  # the caller treats a cancelled commit as an unknown outcome too
                except Exception as exc:
                    raise OutcomeUnknown(type(exc).__name__) from exc
            finally:
                with contextlib.suppress(Exception):
                    await connection.close()

    @property
    def writes_outside_transaction(self) -> bool:
        """Whether a write may be one statement that commits on its own (`autocommit`): PostgreSQL reached
        directly or through session pooling, and no commit hook. Not through PgBouncer's transaction pooling
        (1.18 here): outside a transaction, a statement prepared on one server connection may run on another.
        Not with a commit hook: the fault seam of the tests is the commit, and such a write has none."""
        return not self.is_sqlite and self.pooling == SESSION_POOLING and self._commit_hook is None

    @contextlib.asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A write pool connection outside any transaction: each statement commits on its own (PostgreSQL).

        For a read and a write guarded by what was read (`changes.write_if_unmoved`), two round trips where
        a transaction takes four. Driver failures come out as storage errors, as in `transaction`; the
        statement that writes says itself when its outcome is unknown (OutcomeUnknown).
        """
        if not self.writes_outside_transaction:
            raise RuntimeError("writes outside a transaction need PostgreSQL with session pooling")
        try:
            connection = await self.engine.connect()
            await connection.execution_options(isolation_level="AUTOCOMMIT")
        except Exception as exc:
            raise translate(exc) from exc
        try:
            try:
                yield connection
            except BaseException as exc:
                translated = await self._failed(connection, exc)
                if translated is exc:
                    raise
                raise translated from exc
        finally:
            with contextlib.suppress(Exception):
                await connection.close()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection from the read pool (no write lock on SQLite); driver failures, and a wait
        for a connection past the pool's, come out as storage errors."""
        try:
            connection = await self.read_engine.connect()
        except Exception as exc:
            raise translate(exc) from exc
        try:
            if self.is_sqlite:
                connection.sync_connection.info["write"] = False  # type: ignore[union-attr]
            try:
                yield connection
            except StorageError:
                raise
            except Exception as exc:
                translated = await self._failed(connection, exc)
                if translated is exc:
                    raise
                raise translated from exc
        finally:
            if self.is_sqlite:
                connection.sync_connection.info["write"] = True  # type: ignore[union-attr]
            with contextlib.suppress(Exception):
                await connection.rollback()
            with contextlib.suppress(Exception):
                await connection.close()

    async def _failed(self, connection: AsyncConnection, exc: BaseException) -> BaseException:
        """The storage error a failure inside a block stands for (`translate`); a connection found lost on the
        driver is first dropped, with the pools (`_drop_lost_connections`)."""
        if lost_connection_unseen(exc):
            await self._drop_lost_connections(connection, exc)
        return translate(exc)

    async def _drop_lost_connections(self, connection: AsyncConnection, exc: BaseException) -> None:
        """What SQLAlchemy does for a disconnect it sees (`_share_disconnects`), for one it did not: a statement
        sent on the driver itself (`storage.pg`, a warm process's first statement of a group) found the
        connection gone. Without this the dead connection went back to the pool as sound, so a warm process
        kept failing its deductions (6 of 6 in the test) until a statement sent through SQLAlchemy met a
        dead connection. The server dropped them all (a restart, a failover): this connection is discarded
        and each pool starts afresh."""
        with contextlib.suppress(Exception):
            await connection.invalidate(exc if isinstance(exc, Exception) else None)
        for engine in self.engines:
            engine.sync_engine.dispose(close=False)  # a fresh pool; checked-out connections finish

    async def ping(self) -> bool:
        """Whether the database answers a trivial query now."""
        try:
            async with self.read() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:  # any failure means not ready; the driver logs the reason
            return False
        return True

    async def dispose(self) -> None:
        for engine in self.engines:
            await engine.dispose()
