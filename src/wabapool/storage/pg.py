"""The deduction path's statements on PostgreSQL, run on the asyncpg connection underneath SQLAlchemy.

Measured per statement on this path (CPU, one process): SQLAlchemy's own work
(building the statement, its cache key, parameter and result processing, the
greenlet hop) was several times the statement's round trip: loading the
locked pool took 389 µs against 72 µs on the driver, the per-WABA spend
upsert 609 µs. A group of deductions runs about six statements, so this was
most of a small group's cost.

The statements are still written with SQLAlchemy Core, compiled once for the
asyncpg dialect, and run inside the caller's SQLAlchemy transaction; rows come
back as asyncpg Records (read by column name, like a mapping).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic_core import to_json
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement

if TYPE_CHECKING:
    import asyncpg

_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy's dialect class is untyped


@dataclass(frozen=True, slots=True)
class Compiled:
    """SQL text with `$n` parameters, their names in order, and the values fixed at compile time."""

    sql: str
    names: tuple[str, ...]
    fixed: Mapping[str, object]

    def arguments(self, values: Mapping[str, object]) -> list[object]:
        return [values[name] if name in values else self.fixed[name] for name in self.names]


def compile_statement(statement: ClauseElement, *, expanding: bool = False) -> Compiled:
    """Compile once, at import; the parameters are `bindparam`s named by the caller. With `expanding`, for a
    statement built per call with its values inside: an `IN` list is rendered out, one parameter per value."""
    compiled = statement.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": expanding})
    # A positional dialect's compiled statement names its parameters in order (`positiontup`).
    names: tuple[str, ...] = tuple(getattr(compiled, "positiontup", None) or ())
    return Compiled(str(compiled), names, dict(compiled.params))


def is_postgresql(connection: AsyncConnection) -> bool:
    return connection.dialect.name == "postgresql"


async def driver(connection: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection of this SQLAlchemy connection, inside the connection's transaction.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its own first
    statement; when ours come first they would run outside the transaction
    (and a `FOR UPDATE` lock would end with the statement). So the adapter's
    transaction is started here if it has not been yet; its commit and
    rollback stay SQLAlchemy's. A test pins this on the real server.
    """
    raw = await connection.get_raw_connection()
    adapted = raw.dbapi_connection
    if adapted is None:
        raise RuntimeError("the connection was closed under its transaction")
    if adapted._transaction is None:  # noqa: SLF001 - the adapter has no public way to begin
        await adapted._start_transaction()  # noqa: SLF001 - does nothing in autocommit mode
    return raw.driver_connection


async def fetch(connection: AsyncConnection, statement: Compiled, **values: object) -> Sequence[asyncpg.Record]:
    return await (await driver(connection)).fetch(statement.sql, *statement.arguments(values))  # type: ignore[no-any-return]


async def execute(connection: AsyncConnection, statement: Compiled, **values: object) -> None:
    await (await driver(connection)).execute(statement.sql, *statement.arguments(values))


def json_text(value: object) -> str:
    """A value for a `json` column sent as text (COPY, arrays); pydantic-core's encoder is 3-4x json.dumps."""
    return to_json(value).decode()
