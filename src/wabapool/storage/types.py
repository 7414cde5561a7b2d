"""Column types that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeAlias

from sqlalchemy import BigInteger, DateTime, Integer, Row
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# A row of a table SQLAlchemy Core reads without Python types for its columns: its fields are read by name
# (`row.amount_minor`) where their meaning is known. The one place a row's fields are typed `Any`.
Record: TypeAlias = Row[*tuple[Any, ...]]

# A row read by column name, from SQLAlchemy (`RowMapping`) or from the driver (an asyncpg `Record`): each value
# of its column's own type, read where the column is known.
ColumnValues: TypeAlias = Mapping[Any, Any]
# The values of one table row in its columns' order (COPY and the array write take them so).
RowValues: TypeAlias = tuple[Any, ...]

# BIGINT identity on PostgreSQL; SQLite only auto-increments INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out (SQLite would otherwise drop the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime reached the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
