"""The daily usage roll-up: spend and messages per WABA per day in the company's timezone.

Written in the transaction of every deduction group (added) and every refund
(taken back, on the refund's own day, like the ledger), so the usage series is
read as O(days x WABAs) rows instead of a scan of the requests. One upsert per
transaction for all WABAs it touched; on PostgreSQL's `copy` write it rides in
the same statement as the per-WABA spend (`changes.write_changes`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Date, String, and_, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from wabapool.storage import pg
from wabapool.storage.tables import waba_daily_usage
from wabapool.storage.types import Record

# (waba_id, amount_minor, messages): one deduction's (or, negated, one refund's) share of a day.
UsageRow = tuple[str, int, int]


def local_day(at: datetime, timezone: str) -> date:
    """The calendar day of `at` in the company's timezone (the roll-up's key)."""
    if at.tzinfo is None:
        raise ValueError("local_day needs an aware datetime")
    return at.astimezone(ZoneInfo(timezone)).date()


def sum_by_waba(rows: Iterable[UsageRow]) -> dict[str, tuple[int, int]]:
    """Amount and messages per WABA; WABAs whose figures sum to nothing are dropped."""
    amounts: dict[str, int] = defaultdict(int)
    messages: dict[str, int] = defaultdict(int)
    for waba_id, amount_minor, count in rows:
        amounts[waba_id] += amount_minor
        messages[waba_id] += count
    return {waba: (amounts[waba], messages[waba]) for waba in amounts if amounts[waba] or messages[waba]}


InsertT = TypeVar("InsertT", postgresql.Insert, sqlite.Insert)


def _upsert(statement: InsertT) -> InsertT:
    return statement.on_conflict_do_update(
        index_elements=["company_id", "waba_id", "day"],
        set_={
            "spent_minor": waba_daily_usage.c.spent_minor + statement.excluded.spent_minor,
            "messages": waba_daily_usage.c.messages + statement.excluded.messages,
        },
    )


def upsert_from_arrays(only_if: ColumnElement[bool] | None = None) -> postgresql.Insert:
    """The roll-up upsert (PostgreSQL) of rows given as arrays side by side: `usage_company_ids`,
    `usage_waba_ids`, `usage_days`, `usage_amounts`, `usage_messages`, each (company, WABA, day) once;
    nothing when `only_if` is false (the guard of a write without the pool's lock, `one_write`)."""
    rows = select(
        func.unnest(bindparam("usage_company_ids", type_=ARRAY(BigInteger))),
        func.unnest(bindparam("usage_waba_ids", type_=ARRAY(String))),
        func.unnest(bindparam("usage_days", type_=ARRAY(Date))),
        func.unnest(bindparam("usage_amounts", type_=ARRAY(BigInteger))),
        func.unnest(bindparam("usage_messages", type_=ARRAY(BigInteger))),
    )
    if only_if is not None:
        rows = rows.where(only_if)
    return _upsert(
        postgresql.insert(waba_daily_usage).from_select(
            ["company_id", "waba_id", "day", "spent_minor", "messages"], rows
        )
    )


_ADD_PG = pg.compile_statement(upsert_from_arrays())


async def add_daily_usage(connection: AsyncConnection, *, company_id: int, day: date, rows: Iterable[UsageRow]) -> None:
    """Add (or, with negative figures, take back) usage of one day: one upsert for every WABA."""
    summed = sum_by_waba(rows)
    if not summed:
        return
    if pg.is_postgresql(connection):
        await pg.execute(
            connection,
            _ADD_PG,
            usage_company_ids=[company_id] * len(summed),
            usage_waba_ids=list(summed),
            usage_days=[day] * len(summed),
            usage_amounts=[amount for amount, _ in summed.values()],
            usage_messages=[count for _, count in summed.values()],
        )
        return
    values = [
        {"company_id": company_id, "waba_id": waba, "day": day, "spent_minor": amount, "messages": count}
        for waba, (amount, count) in summed.items()
    ]
    await connection.execute(_upsert(sqlite.insert(waba_daily_usage).values(values)))  # not PostgreSQL: SQLite


async def daily_usage(
    connection: AsyncConnection, *, company_id: int, first_day: date, last_day: date, waba_id: str | None
) -> list[Record]:
    """Roll-up rows (day, waba_id, spent_minor, messages) of the days first..last (both included)."""
    u = waba_daily_usage
    conditions = [u.c.company_id == company_id, u.c.day >= first_day, u.c.day <= last_day]
    if waba_id is not None:
        conditions.append(u.c.waba_id == waba_id)
    query = select(u.c.day, u.c.waba_id, u.c.spent_minor, u.c.messages).where(and_(*conditions))
    return list(await connection.execute(query.order_by(u.c.day, u.c.waba_id)))


async def companies_with_usage_since(connection: AsyncConnection, *, first_day: date, limit: int) -> list[int]:
    """Companies with any roll-up row from `first_day` on (those a forecast can say something about)."""
    u = waba_daily_usage
    query = select(u.c.company_id).where(u.c.day >= first_day).group_by(u.c.company_id).order_by(u.c.company_id)
    return list((await connection.execute(query.limit(limit))).scalars())
