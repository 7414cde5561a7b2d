"""A small deduction group's writes on PostgreSQL, in one statement.

A group writes its deduction rows, their ledger entries, the changed buckets
and the per-WABA spend. As separate statements (two of them COPY, which
takes two round trips each) that is six round trips; most groups under load
are a few dozen deductions, for which the round trips, not the rows, are the
cost. Here they are one statement: data-modifying CTEs fed by arrays, each
run to completion whatever the main query reads. Large groups still use COPY
(`bulk`), which moves rows about twice as fast as unnest.

The deduction ids were reserved before the pool was locked, so the ledger
rows carry them already. A unique_code that is already taken is skipped by
ON CONFLICT and shows in the returned count; the caller then rolls the whole
transaction back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Column, String
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.storage import bulk, pg
from wabapool.storage.ledger import LedgerRow
from wabapool.storage.requests import DeductionRow
from wabapool.storage.tables import deduction_requests, ledger_entries, quota_buckets, waba_cycle_spend

# Groups up to this size go in one statement; larger ones by COPY.
MAX_ROWS = 64

_PG = postgresql.dialect()


def _array_type(column: Column[Any]) -> str:
    """The element type of a column's array parameter; strings unbounded, so an over-long value
    fails the INSERT's own check instead of being cut by the explicit cast."""
    if isinstance(column.type, (JSON, String)):
        return "TEXT"
    return column.type.compile(dialect=_PG)


def _insert_from_arrays(table: Any, names: Sequence[str], first: int) -> str:
    """INSERT … SELECT from one array parameter per column, starting at parameter `first`."""
    columns = [table.c[name] for name in names]
    arrays = ", ".join(f"${first + i}::{_array_type(c)}[]" for i, c in enumerate(columns))
    aliases = [f"a{i}" for i in range(len(columns))]
    picked = ", ".join(f"{a}::JSON" if isinstance(c.type, JSON) else a for a, c in zip(aliases, columns, strict=True))
    return (
        f"INSERT INTO {table.name} ({', '.join(names)}) "
        f"SELECT {picked} FROM unnest({arrays}) AS source({', '.join(aliases)})"
    )


_DEDUCTION_NAMES = bulk.DEDUCTION_COLUMNS
_LEDGER_NAMES = LedgerRow._fields
_FIRST_LEDGER = 1 + len(_DEDUCTION_NAMES)
_FIRST_REST = _FIRST_LEDGER + len(_LEDGER_NAMES)
_COMPONENT, _QUOTA_TYPES, _BALANCES, _LIMITS, _COMPANY, _CYCLE, _WABAS, _SPENT = range(_FIRST_REST, _FIRST_REST + 8)

WRITE_GROUP = f"""
WITH deductions AS (
    {_insert_from_arrays(deduction_requests, _DEDUCTION_NAMES, 1)}
    ON CONFLICT (company_id, unique_code) DO NOTHING
    RETURNING 1
), entries AS (
    {_insert_from_arrays(ledger_entries, _LEDGER_NAMES, _FIRST_LEDGER)}
), buckets AS (
    UPDATE {quota_buckets.name} AS bucket
    SET balance_minor = changed.balance, limit_minor = changed.lim
    FROM unnest(${_QUOTA_TYPES}::VARCHAR[], ${_BALANCES}::BIGINT[], ${_LIMITS}::BIGINT[])
        AS changed(quota_type, balance, lim)
    WHERE bucket.billing_component_id = ${_COMPONENT}::BIGINT AND bucket.quota_type = changed.quota_type
), spend AS (
    INSERT INTO {waba_cycle_spend.name} (company_id, waba_id, cycle_start, spent_minor)
    SELECT ${_COMPANY}::BIGINT, waba, ${_CYCLE}::TIMESTAMP WITH TIME ZONE, amount
    FROM unnest(${_WABAS}::VARCHAR[], ${_SPENT}::BIGINT[]) AS spent(waba, amount)
    ON CONFLICT (company_id, waba_id, cycle_start)
    DO UPDATE SET spent_minor = {waba_cycle_spend.name}.spent_minor + excluded.spent_minor
)
SELECT count(*) FROM deductions
"""


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows to one list per column (an empty list each when there are no rows)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


async def write_group(
    connection: AsyncConnection,
    *,
    deductions: Sequence[DeductionRow],
    ids: Sequence[int],
    entries: Sequence[LedgerRow],
    component_id: int,
    bucket_changes: Sequence[tuple[str, int, int]],
    company_id: int,
    cycle_start: Any,
    spend_by_waba: dict[str, int],
) -> int:
    """Write it all; returns how many deduction rows went in (fewer if a code was taken)."""
    deduction_rows = bulk.deduction_records(ids, deductions)
    spent = {waba: amount for waba, amount in spend_by_waba.items() if amount}
    arguments = [
        *_columns(deduction_rows, len(_DEDUCTION_NAMES)),
        *_columns(entries, len(_LEDGER_NAMES)),
        component_id,
        *_columns(bucket_changes, 3),
        company_id,
        cycle_start,
        list(spent),
        list(spent.values()),
    ]
    inserted: int = await (await pg.driver(connection)).fetchval(WRITE_GROUP, *arguments)
    return inserted
