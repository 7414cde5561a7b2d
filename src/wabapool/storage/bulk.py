"""PostgreSQL COPY for the two tables every deduction group writes rows into.

A multi-row INSERT through the SQL layer spends most of its time binding
parameters in Python; COPY sends the rows in the binary protocol, and even a
group of one is cheaper this way than through SQLAlchemy. Ids come from the
table's own sequence in one query, made before the pool is locked.
COPY has no ON CONFLICT: a unique_code already taken fails the COPY, which the
caller turns into "decide again with the look-up".
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.storage import pg
from wabapool.storage.ledger import LedgerRow
from wabapool.storage.requests import DeductionRow
from wabapool.storage.tables import deduction_requests, ledger_entries

DEDUCTION_COLUMNS = ("id", *DeductionRow._fields)
LEDGER_COLUMNS = LedgerRow._fields
_NEXT_IDS = "SELECT nextval('deduction_requests_id_seq') FROM generate_series(1, $1)"


class CodeTaken(Exception):
    """COPY met a unique_code that is already in the table."""


async def reserve_ids(connection: AsyncConnection, count: int) -> list[int]:
    """Ids for up to `count` deduction rows; unused ones are gaps, as after any rollback."""
    return [record[0] for record in await (await pg.driver(connection)).fetch(_NEXT_IDS, count)]


def deduction_records(ids: Sequence[int], rows: Sequence[DeductionRow]) -> list[tuple[object, ...]]:
    """Rows with their ids, in DEDUCTION_COLUMNS order; a `json` column takes text, so the allocations go encoded."""
    return [(row_id, *row[:-1], pg.json_text(row[-1])) for row_id, row in zip(ids, rows, strict=True)]


async def copy_deductions(
    connection: AsyncConnection, rows: Sequence[DeductionRow], reserved_ids: Sequence[int]
) -> None:
    """Insert every row with the first of the reserved ids, or raise CodeTaken."""
    records = deduction_records(reserved_ids[: len(rows)], rows)
    try:
        await (await pg.driver(connection)).copy_records_to_table(
            deduction_requests.name, records=records, columns=DEDUCTION_COLUMNS
        )
    except asyncpg.UniqueViolationError as exc:
        raise CodeTaken from exc


async def copy_ledger_entries(connection: AsyncConnection, rows: Sequence[LedgerRow]) -> None:
    await (await pg.driver(connection)).copy_records_to_table(ledger_entries.name, records=rows, columns=LEDGER_COLUMNS)
