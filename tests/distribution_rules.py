"""Citus's rules for a distributed schema, checked against a PostgreSQL catalog (the schema test uses them).

A table distributed by a column must have that column in its primary key, in
every unique key (constraint or unique index, partial ones too) and, for a
foreign key to another table distributed the same way, on both sides in the
same position; a foreign key may also point at a reference table. A reference
table may not point at a distributed one. Every table must be placed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from tests.services import POSTGRES_ADMIN_URL, POSTGRES_URL
from wabapool.storage import distribution

_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname
"""
_COLUMNS_OF = """ARRAY(SELECT a.attname FROM unnest({keys}) WITH ORDINALITY AS k(attnum, position)
      JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = k.attnum ORDER BY k.position)"""
_KEYS = f"""
SELECT c.relname AS table_name, con.conname AS name, con.contype::text AS kind,
       {_COLUMNS_OF.format(keys="con.conkey", rel="con.conrelid")} AS columns,
       referred.relname AS referred_table,
       {_COLUMNS_OF.format(keys="con.confkey", rel="con.confrelid")} AS referred_columns
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class referred ON referred.oid = con.confrelid
WHERE n.nspname = 'public' AND con.contype IN ('p', 'u', 'f')
UNION ALL
SELECT t.relname, i.relname, 'i', {_COLUMNS_OF.format(keys="ix.indkey::int2[]", rel="ix.indrelid")}, NULL, NULL
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = 'public' AND ix.indisunique
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = ix.indexrelid)
ORDER BY 1, 2
"""
_KINDS = {"p": "primary key", "u": "unique key", "i": "unique index", "f": "foreign key"}


@dataclass(frozen=True)
class Key:
    table: str
    name: str
    kind: str
    columns: tuple[str, ...]
    referred_table: str | None
    referred_columns: tuple[str, ...]


def _column_of(table: str) -> str | None:
    """The distribution column of a distributed table; None for reference and local tables."""
    if table in distribution.COMPANY_TABLES:
        return distribution.DISTRIBUTION_COLUMN
    return distribution.OTHER_DISTRIBUTED_TABLES.get(table)


def violations(tables: list[str], keys: list[Key]) -> list[str]:
    """Every way the catalog breaks the placement lists or Citus's key rules, as sentences."""
    found = [
        f"table {table} is neither distributed nor a reference table (add it to storage/distribution.py)"
        for table in tables
        if distribution.placement(table) is None
    ]
    primary = {key.table for key in keys if key.kind == "p"}
    found += [
        f"distributed table {table} has no primary key"
        for table in tables
        if _column_of(table) is not None and table not in primary
    ]
    for key in keys:
        column = _column_of(key.table)
        described = f"{_KINDS[key.kind]} {key.name} of {key.table} ({', '.join(key.columns)})"
        if key.kind == "f":
            found += _foreign_key_violations(key, column, described)
        elif column is not None and column not in key.columns:
            found.append(f"{described} lacks the distribution column {column}")
    return found


def _foreign_key_violations(key: Key, column: str | None, described: str) -> list[str]:
    referred = key.referred_table or ""
    referred_placement = distribution.placement(referred)
    if column is None:
        if referred_placement in ("company", "distributed"):
            return [f"{described} points from a reference table at distributed {referred}"]
        return []
    if referred_placement == "reference":
        return []
    if _column_of(referred) != column or referred_placement != distribution.placement(key.table):
        return [f"{described} points at {referred}, which is not co-located with {key.table}"]
    pairs = set(zip(key.columns, key.referred_columns, strict=True))
    if (column, column) not in pairs:
        return [f"{described} does not match {column} with {referred}.{column}"]
    return []


async def read_catalog(connection: asyncpg.Connection) -> tuple[list[str], list[Key]]:
    tables = [row["relname"] for row in await connection.fetch(_TABLES)]
    keys = [
        Key(
            row["table_name"],
            row["name"],
            row["kind"],
            tuple(row["columns"]),
            row["referred_table"],
            tuple(row["referred_columns"] or ()),
        )
        for row in await connection.fetch(_KEYS)
    ]
    return tables, keys


@contextlib.asynccontextmanager
async def scratch_database(suffix: str) -> AsyncIterator[str]:
    """An empty PostgreSQL database of its own beside the test database (named after it), dropped afterwards."""
    name = f"{POSTGRES_URL.rsplit('/', 1)[1]}_{suffix}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
