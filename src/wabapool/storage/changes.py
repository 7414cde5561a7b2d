"""The one way ledger changes are written: `write_changes`.

Every use case (deductions, refunds, payments, provisioning, cycle catch-up)
decides its changes in memory with the domain rules and hands them here, one
`PoolChanges` per pool, in the caller's transaction: the new deduction
requests, the ledger entries, the buckets and pool state that changed, the
per-WABA spend, the statements of the cycles it closed, the outbox events. A sequence of
pools is one call, so a group that spans several pools writes each table once. It returns what each pool
became (`versions.Written`: new state, version, WABAs with their cycle spend),
which is what the balance cache is given after the commit.

One narrow exception writes outside the caller's transaction: `write_if_unmoved`,
a lone deduction's `statement` write that commits on its own, guarded by the
version its pool was read at (every write here raises that version last, under
the pool's lock, so a pool that matches is the pool that was read).

Three strategies, chosen by the database and the group's size, never by the caller:
- `core`: SQLAlchemy Core statements, one per table (multi-row inserts and
  executemany). The only one SQLite has; on PostgreSQL it is what the
  contract test compares the others against.
- `statement` (PostgreSQL, up to `ONE_STATEMENT_MAX_DEDUCTIONS`): every
  table in one statement of CTEs fed by arrays (`one_write`): one round trip.
- `copy` (PostgreSQL, larger groups): deduction requests and ledger entries
  go in by COPY in the binary protocol, then the buckets, then the spend,
  usage and versions in one statement: four round trips, less CPU per row.

Measured with `python -m bench.write_strategies --rounds 21` (PostgreSQL 15
on loopback, 2 shared cores with other work on them, p50 of rotating rounds,
the write alone), wall / CPU ms per group:

  | deductions | core          | copy         | statement     |
  |-----------:|---------------|--------------|---------------|
  | 1          | 4.63 / 2.07   | 1.00 / 0.61  | 0.80 / 0.40   |
  | 16         | 6.44 / 2.50   | 3.04 / 0.88  | 2.29 / 0.59   |
  | 64         | 12.49 / 4.05  | 4.77 / 1.42  | 3.94 / 1.36   |
  | 128        |               | 4.55 / 1.68  | 5.86 / 2.22   |
  | 1,000      | 85.52 / 30.30 | 34.56 / 8.59 | 39.98 / 15.80 |

The ids of new deduction rows come reserved with the pool's lock
(`group_lock`; `reserve_deduction_ids` for the other writers), so every
ledger entry already carries its request's id. A unique_code that is already
taken fails the insert: UniqueConflict, and the transaction rolls back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Literal, NamedTuple, TypeVar, cast

from sqlalchemy import BigInteger, String, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Select

from wabapool.domain.events import DomainEvent
from wabapool.domain.operations import PoolState
from wabapool.domain.statements import Statement
from wabapool.storage import pg, statements, usage
from wabapool.storage.errors import OutcomeUnknown, refused_by_server
from wabapool.storage.ledger import OUTBOX_COLUMNS, LedgerRow, emit_events, outbox_rows
from wabapool.storage.one_write import bucket_arrays, column_arrays, compile_one_write
from wabapool.storage.pools import SET_BUCKET, LockedPool, bucket_changes, save_pool_state
from wabapool.storage.requests import DeductionRow
from wabapool.storage.tables import deduction_requests, ledger_entries, waba_cycle_spend
from wabapool.storage.types import RowValues
from wabapool.storage.upsert import insert_for
from wabapool.storage.versions import (
    BUMPED_IF_UNMOVED,
    Written,
    bump_if_unmoved,
    bump_versions,
    bump_with_spend_pg,
    found_unmoved,
)

Strategy = Literal["core", "copy", "statement"]
# Up to this many deductions a group is written in one statement, past it by COPY: one statement saves round
# trips, COPY's binary rows cost less CPU per row (the table above: statement / copy 0.83 at 64, 1.29 at 128).
ONE_STATEMENT_MAX_DEDUCTIONS = 64
_Upsert = TypeVar("_Upsert", bound=postgresql.Insert | sqlite.Insert)
DEDUCTION_COLUMNS = ("id", *DeductionRow._fields)
LEDGER_COLUMNS = LedgerRow._fields


class SpendDelta(NamedTuple):
    """A change of one WABA's spend in one cycle (negative for a refund), and of the part its cap covers."""

    waba_id: str
    cycle_start: datetime
    amount_minor: int
    capped_minor: int = 0


class UsageDelta(NamedTuple):
    """A change of one WABA's spend and messages on one day of the company's timezone (negative: a refund)."""

    waba_id: str
    day: date
    amount_minor: int
    messages: int


class PoolChanges(NamedTuple):
    """Everything one transaction changes in one pool."""

    pool: LockedPool
    after: PoolState
    entries: Sequence[LedgerRow] = ()
    deductions: Sequence[DeductionRow] = ()
    deduction_ids: Sequence[int] = ()
    spend: Sequence[SpendDelta] = ()
    usage: Sequence[UsageDelta] = ()
    events: Sequence[DomainEvent] = ()
    # The cycles this change closes (decided by the service from the stored cycle's activity).
    statements: Sequence[Statement] = ()


async def reserve_deduction_ids(connection: AsyncConnection, count: int) -> list[int]:
    """Ids for up to `count` new deduction rows; an unused one is a gap, as after any rollback.

    PostgreSQL hands them out from the table's sequence (before any lock is
    taken). SQLite has one writer at a time and the transaction holds it, so the
    next ids after the largest are free until it ends.
    """
    if count <= 0:
        return []
    if pg.is_postgresql(connection):
        rows = await (await pg.driver(connection)).fetch(_NEXT_IDS, count)
        return [row[0] for row in rows]
    largest = (await connection.execute(select(func.coalesce(func.max(deduction_requests.c.id), 0)))).scalar_one()
    return list(range(largest + 1, largest + 1 + count))


# The sequence named once: pg_get_serial_sequence() inside the generator ran its catalog lookup per row.
_NEXT_IDS = "SELECT nextval('deduction_requests_id_seq') FROM generate_series(1, $1)"


async def write_changes(
    connection: AsyncConnection, changes: Sequence[PoolChanges], *, at: datetime, strategy: Strategy | None = None
) -> list[Written]:
    """Write every pool's changes in the caller's transaction (it commits); UniqueConflict if a code is taken.

    Returns what each pool became, in `changes`' order (its version raised last, after everything else).
    """
    deductions = [record for change in changes for record in _deduction_records(change)]
    chosen = strategy or _strategy_for(connection, len(deductions))
    entries = [entry for change in changes for entry in change.entries]
    if chosen == "statement":
        return await _write_in_one_statement(connection, changes, deductions, entries, at=at)
    if chosen == "copy":
        await _copy_rows(connection, deductions, entries)
    else:
        await _insert_rows(connection, deductions, entries)
    await _update_buckets(connection, changes, use_driver=chosen == "copy")
    if chosen == "core":
        await _add_spend(connection, changes)
        await _add_usage(connection, changes)
    for change in changes:
        await _write_rare_parts(connection, change, at=at)
    written = [(change.pool, change.after) for change in changes]
    if chosen == "copy":
        # The spend, the roll-up and the version bump in one round trip, last.
        return await bump_versions(
            connection, written, at=at, statement=_BUMP_WITH_SPEND_PG, **_spend_and_usage_arguments(changes)
        )
    return await bump_versions(connection, written, at=at)


def _strategy_for(connection: AsyncConnection, deductions: int) -> Strategy:
    if not pg.is_postgresql(connection):
        return "core"
    return "statement" if deductions <= ONE_STATEMENT_MAX_DEDUCTIONS else "copy"


async def _write_in_one_statement(
    connection: AsyncConnection,
    changes: Sequence[PoolChanges],
    deductions: list[RowValues],
    entries: list[LedgerRow],
    *,
    at: datetime,
) -> list[Written]:
    """The rarest parts first (a cycle's statements, a moved threshold), then everything else in one statement
    (`one_write`): the requests, the entries, the buckets, the spend, the usage, the events, the versions
    with the moved pool states."""
    for change in changes:
        await _write_rare_parts(connection, change, at=at, events=False)
    statement, arguments = _one_write(_ONE_WRITE_PG, changes, deductions, entries, at=at)
    return await bump_versions(
        connection, [(change.pool, change.after) for change in changes], at=at, statement=statement, **arguments
    )


def _one_write(
    compiled: _OneWrite,
    changes: Sequence[PoolChanges],
    deductions: list[RowValues],
    entries: list[LedgerRow],
    *,
    at: datetime,
) -> tuple[pg.Compiled, dict[str, list[object]]]:
    """Which of `compiled` writes the changes (the one with the events CTE only if there are events), and
    its arrays: every row of the changes, one array per column."""
    # A json column's array goes as text: a request's allocations, an event's payload (each the last field).
    records = [(*record[:-1], pg.json_text(record[-1])) for record in deductions]
    arguments = {
        **_spend_and_usage_arguments(changes),
        **column_arrays("requests", DEDUCTION_COLUMNS, records),
        **column_arrays("entries", LEDGER_COLUMNS, entries),
        **bucket_arrays(_bucket_rows(changes)),
    }
    events = [
        (*row[:-1], pg.json_text(row.payload))
        for change in changes
        for row in outbox_rows(company_id=change.after.company_id, events=change.events, at=at)
    ]
    if not events:
        return compiled.without_events, arguments
    return compiled.with_events, {**arguments, **column_arrays("events", OUTBOX_COLUMNS, events)}


async def _write_rare_parts(
    connection: AsyncConnection, change: PoolChanges, *, at: datetime, events: bool = True
) -> None:
    """What only some writes have: the statements of the cycles closed, a moved pool state (on PostgreSQL the
    version bump writes the package row's, `versions._moved_state`: here only a moved threshold), outbox events
    (unless the caller's statement writes them)."""
    if change.statements:
        await statements.insert_statements(connection, pool=change.pool, statements=change.statements, at=at)
    await save_pool_state(connection, change.pool, change.after, at=at, row_state=not pg.is_postgresql(connection))
    if events:
        await emit_events(connection, company_id=change.after.company_id, events=change.events, at=at)


def _deduction_records(change: PoolChanges) -> list[RowValues]:
    """Request rows with their ids, in DEDUCTION_COLUMNS order."""
    if len(change.deduction_ids) < len(change.deductions):
        raise ValueError("every new deduction needs a reserved id")
    return [(row_id, *row) for row_id, row in zip(change.deduction_ids, change.deductions, strict=False)]


async def _insert_rows(connection: AsyncConnection, deductions: list[RowValues], entries: list[LedgerRow]) -> None:
    if deductions:
        await connection.execute(
            deduction_requests.insert(), [dict(zip(DEDUCTION_COLUMNS, record, strict=True)) for record in deductions]
        )
    if entries:
        await connection.execute(ledger_entries.insert(), [entry._asdict() for entry in entries])


async def _copy_rows(connection: AsyncConnection, deductions: list[RowValues], entries: list[LedgerRow]) -> None:
    driver = await pg.driver(connection)
    if deductions:
        # A json column takes text in COPY: the allocations (last field) go encoded.
        records = [(*record[:-1], pg.json_text(record[-1])) for record in deductions]
        await driver.copy_records_to_table(deduction_requests.name, records=records, columns=DEDUCTION_COLUMNS)
    if entries:
        await driver.copy_records_to_table(ledger_entries.name, records=entries, columns=LEDGER_COLUMNS)


_SET_BUCKET_PG = pg.compile_statement(SET_BUCKET)


def _bucket_rows(changes: Sequence[PoolChanges]) -> list[tuple[int, int, str, int, int, int]]:
    """(company, component, quota type, balance, limit, used) of every bucket the changes moved."""
    return [
        (change.after.company_id, change.pool.component_id, quota_type, balance, limit, used)
        for change in changes
        for quota_type, balance, limit, used in bucket_changes(change.pool.state.buckets, change.after.buckets)
    ]


async def _update_buckets(connection: AsyncConnection, changes: Sequence[PoolChanges], *, use_driver: bool) -> None:
    names = ("bucket_company_id", "component_id", "bucket", "balance", "limit", "used")
    values = [dict(zip(names, row, strict=True)) for row in _bucket_rows(changes)]
    if not values:
        return
    if use_driver:
        await (await pg.driver(connection)).executemany(
            _SET_BUCKET_PG.sql, [_SET_BUCKET_PG.arguments(value) for value in values]
        )
    else:
        await connection.execute(SET_BUCKET, values)


def _spend_upsert(statement: _Upsert) -> _Upsert:
    # The same construct back (each dialect's `on_conflict_do_update` returns its own Insert).
    return cast(
        _Upsert,
        statement.on_conflict_do_update(
            index_elements=["company_id", "waba_id", "cycle_start"],
            set_={
                "spent_minor": waba_cycle_spend.c.spent_minor + statement.excluded.spent_minor,
                "capped_spent_minor": waba_cycle_spend.c.capped_spent_minor + statement.excluded.capped_spent_minor,
            },
        ),
    )


def _spend_from_arrays(only_if: ColumnElement[bool] | None = None) -> postgresql.Insert:
    """The spend upsert of rows given as arrays side by side; nothing when `only_if` is false."""
    rows = select(
        func.unnest(bindparam("company_ids", type_=ARRAY(BigInteger))),
        func.unnest(bindparam("waba_ids", type_=ARRAY(String))),
        func.unnest(bindparam("cycle_starts", type_=ARRAY(waba_cycle_spend.c.cycle_start.type))),
        func.unnest(bindparam("amounts", type_=ARRAY(BigInteger))),
        func.unnest(bindparam("capped_amounts", type_=ARRAY(BigInteger))),
    )
    if only_if is not None:
        rows = rows.where(only_if)
    return _spend_upsert(
        postgresql.insert(waba_cycle_spend).from_select(
            ["company_id", "waba_id", "cycle_start", "spent_minor", "capped_spent_minor"], rows
        )
    )


# Every (company, WABA, cycle) of the call and every (company, WABA, day) of the usage roll-up in one
# statement with the version bump and its read-back (arrays unnested side by side, the upserts CTEs; an
# empty side writes nothing). As a round trip of its own the roll-up cost the single path 7% (`python -m
# bench.hot_pool --pools 1 --senders 64 --variants single,single-no-rollup,batch,batch-no-rollup
# --batch-sizes 1000 --rounds 4`: every round with it slower than every round without), and the version
# bump about 10%; folded in, the differences are noise.
_BUMP_WITH_SPEND = bump_with_spend_pg(_spend_from_arrays(), usage.upsert_from_arrays())
_BUMP_WITH_SPEND_PG = pg.compile_statement(_BUMP_WITH_SPEND)


class _OneWrite(NamedTuple):
    """The one-statement write compiled twice: without and with the events CTE. A group with events writes
    them in the same round trip, not one each inside the locked window (over 1,000 pools in the bench that
    was two events in ten deductions); a group without takes the other, as the outbox's NOTIFY trigger fires
    for every INSERT statement, rows or none."""

    without_events: pg.Compiled
    with_events: pg.Compiled


def _compiled_one_write(bump_with_spend: Select[tuple[object, ...]], only_if: ColumnElement[bool] | None) -> _OneWrite:
    return _OneWrite(
        *(
            compile_one_write(
                bump_with_spend, DEDUCTION_COLUMNS, LEDGER_COLUMNS, only_if=only_if, outbox_columns=outbox
            )
            for outbox in ((), OUTBOX_COLUMNS)
        )
    )


_ONE_WRITE_PG = _compiled_one_write(_BUMP_WITH_SPEND, None)
# The same write without the pool's lock: every CTE guarded by the version bump (`write_if_unmoved`).
_ONE_WRITE_IF_UNMOVED_PG = _compiled_one_write(
    bump_with_spend_pg(
        _spend_from_arrays(found_unmoved()), usage.upsert_from_arrays(found_unmoved()), bumped=BUMPED_IF_UNMOVED
    ),
    found_unmoved(),
)


def fits_one_statement(change: PoolChanges) -> bool:
    """Whether `write_if_unmoved` can write the change: none of the parts only `write_changes` writes (a
    cycle's statements, a moved threshold), the same cycle, and no more rows than one statement takes.

    Events and a moved warning state (low balance, below zero, alerts fired, an auto-recharge request) go
    in the statement, as in the locked write: the guard makes them as exact as the buckets they follow.
    """
    return (
        not change.statements
        and change.pool.state.cycle_start == change.after.cycle_start
        and change.pool.state.threshold_percent == change.after.threshold_percent
        and len(change.deductions) <= ONE_STATEMENT_MAX_DEDUCTIONS
    )


async def write_if_unmoved(connection: AsyncConnection, change: PoolChanges, *, at: datetime) -> Written | None:
    """One pool's changes in one statement that commits on its own (PostgreSQL, a connection outside any
    transaction), written only if the pool is still as it was read: what it became, or None, and nothing
    written, if it moved meanwhile (then the caller takes the pool's lock). The change must fit one
    statement (`fits_one_statement`).

    A unique_code already taken fails the statement (UniqueConflict, nothing written). Any failure that is
    not the server's own answer (a lost connection, a terminated session) is OutcomeUnknown: the statement
    may have committed.
    """
    if not fits_one_statement(change):
        raise ValueError("the change has parts that only write_changes writes")
    statement, arguments = _one_write(
        _ONE_WRITE_IF_UNMOVED_PG, [change], _deduction_records(change), list(change.entries), at=at
    )
    try:
        return await bump_if_unmoved(connection, change.pool, change.after, at=at, statement=statement, **arguments)
    except Exception as exc:
        if refused_by_server(exc):
            raise  # translated by the connection's owner (`Database.autocommit`)
        raise OutcomeUnknown(type(exc).__name__) from exc


def _spend_and_usage_arguments(changes: Sequence[PoolChanges]) -> dict[str, list[object]]:
    """The spend and the daily roll-up of every pool of the call, as `_BUMP_WITH_SPEND_PG`'s arrays."""
    spend = _summed_spend(changes)
    rolled_up = _summed_usage(changes)
    return {
        "company_ids": [key[0] for key, _ in spend],
        "waba_ids": [key[1] for key, _ in spend],
        "cycle_starts": [key[2] for key, _ in spend],
        "amounts": [amount for _, (amount, _capped) in spend],
        "capped_amounts": [capped for _, (_amount, capped) in spend],
        "usage_company_ids": [key[0] for key, _ in rolled_up],
        "usage_waba_ids": [key[1] for key, _ in rolled_up],
        "usage_days": [key[2] for key, _ in rolled_up],
        "usage_amounts": [amount for _, (amount, _messages) in rolled_up],
        "usage_messages": [messages for _, (_amount, messages) in rolled_up],
    }


def _summed_usage(changes: Sequence[PoolChanges]) -> list[tuple[tuple[int, str, date], tuple[int, int]]]:
    """Usage per (company, WABA, day), summed first (an upsert may not touch one row twice); nothing-sums dropped."""
    amounts: dict[tuple[int, str, date], int] = defaultdict(int)
    messages: dict[tuple[int, str, date], int] = defaultdict(int)
    for change in changes:
        for delta in change.usage:
            key = (change.after.company_id, delta.waba_id, delta.day)
            amounts[key] += delta.amount_minor
            messages[key] += delta.messages
    return [(key, (amounts[key], messages[key])) for key in amounts if amounts[key] or messages[key]]


async def _add_usage(connection: AsyncConnection, changes: Sequence[PoolChanges]) -> None:
    """The daily roll-up as statements of its own: one upsert per company and day (nearly always one)."""
    by_day: dict[tuple[int, date], list[tuple[str, int, int]]] = defaultdict(list)
    for (company_id, waba_id, day), (amount_minor, messages) in _summed_usage(changes):
        by_day[(company_id, day)].append((waba_id, amount_minor, messages))
    for (company_id, day), rows in by_day.items():
        await usage.add_daily_usage(connection, company_id=company_id, day=day, rows=rows)


def _summed_spend(changes: Sequence[PoolChanges]) -> list[tuple[tuple[int, str, datetime], tuple[int, int]]]:
    """(Spend, capped spend) per (company, WABA, cycle), summed first: an upsert may not touch one row twice."""
    summed: dict[tuple[int, str, datetime], int] = defaultdict(int)
    capped: dict[tuple[int, str, datetime], int] = defaultdict(int)
    for change in changes:
        for delta in change.spend:
            key = (change.after.company_id, delta.waba_id, delta.cycle_start)
            summed[key] += delta.amount_minor
            capped[key] += delta.capped_minor
    return [(key, (amount, capped[key])) for key, amount in summed.items() if amount or capped[key]]


async def _add_spend(connection: AsyncConnection, changes: Sequence[PoolChanges]) -> None:
    rows = _summed_spend(changes)
    if not rows:
        return
    values = [
        {
            "company_id": company_id,
            "waba_id": waba_id,
            "cycle_start": cycle_start,
            "spent_minor": amount,
            "capped_spent_minor": capped,
        }
        for (company_id, waba_id, cycle_start), (amount, capped) in rows
    ]
    await connection.execute(_spend_upsert(insert_for(connection, waba_cycle_spend).values(values)))
