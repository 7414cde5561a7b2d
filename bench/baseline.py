"""The RFC's design, rebuilt here as the baseline wabapool is measured against.

The source system (qontak-billing) deducts like this: read the pool's buckets,
compute the split along the hierarchy (initial → additional → postpaid up to
its limit), then write each bucket it touches with an optimistic lock,

    UPDATE … SET value = :new, lock_version = lock_version + 1
    WHERE id = :id AND lock_version = :read_version

and log the deduction in a table whose unique (company, unique_code) index
makes a repeat fail. When an UPDATE changes no row another writer got there
first: the transaction rolls back and the deduction is tried again, at most 3
more times; after that the message goes back to the end of the sender's queue.

It lives in the benchmark, on tables of its own, and is deliberately lean (no
price lookup, no ledger, no outbox), so every difference measured favours it.
`guarded=False` drops the lock_version condition: the blind read-modify-write
that loses updates, kept so the tests can prove the correctness check sees it.

`LockingDeducter` is the second baseline: what a careful engineer writes
without group commit. One transaction per deduction that locks the pool's
buckets with `SELECT … FOR UPDATE`, splits, writes and commits: no conflicts and
no retries, but every deduction of a pool waits for the one before it. Same
tables, same lean work.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.stats import Check, Deadline, SenderStats
from bench.workload import Funding, Message, company_id_of
from wabapool.storage.database import Database
from wabapool.storage.errors import UniqueConflict

# The RFC: "align to 3 retries", then requeue.
MAX_RETRIES = 3
HIERARCHY = ("initial", "additional", "postpaid")

metadata = MetaData()

# `value_minor` is remaining for initial/additional and used for postpaid;
# `start_value_minor` is the value the cell began with, for the check.
buckets = Table(
    "bench_baseline_buckets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("company_id", BigInteger, nullable=False),
    Column("quota_type", String(16), nullable=False),
    Column("value_minor", BigInteger, nullable=False),
    Column("limit_minor", BigInteger, nullable=False),
    Column("start_value_minor", BigInteger, nullable=False),
    Column("lock_version", Integer, nullable=False),
    UniqueConstraint("company_id", "quota_type", name="uq_bench_baseline_buckets_company_type"),
)

deductions = Table(
    "bench_baseline_deductions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("company_id", BigInteger, nullable=False),
    Column("unique_code", String(128), nullable=False),
    Column("waba_id", String(32), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("credited_to", String(32), nullable=False),
    UniqueConstraint("company_id", "unique_code", name="uq_bench_baseline_deductions_company_code"),
)

Outcome = Literal["applied", "replayed", "rejected", "requeue"]


class _Conflict(Exception):
    """An UPDATE guarded by lock_version changed no row: roll back and try again."""


async def create_tables(database: Database) -> None:
    async with database.transaction() as connection:
        await connection.run_sync(metadata.create_all)


async def reset(connection: AsyncConnection) -> None:
    names = [table.name for table in reversed(metadata.sorted_tables)]
    if connection.dialect.name == "postgresql":
        await connection.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY"))
    else:
        for name in names:
            await connection.execute(text(f"DELETE FROM {name}"))


async def provision(database: Database, fundings: list[Funding]) -> None:
    """Empty tables, then three buckets per pool."""
    rows = []
    for pool_index, funding in enumerate(fundings):
        company_id = company_id_of(pool_index)
        for quota_type, value, limit in (
            ("initial", funding.initial_minor, funding.initial_minor),
            ("additional", funding.additional_minor, 0),
            ("postpaid", 0, funding.postpaid_limit_minor),
        ):
            rows.append(
                {
                    "company_id": company_id,
                    "quota_type": quota_type,
                    "value_minor": value,
                    "limit_minor": limit,
                    "start_value_minor": value,
                    "lock_version": 0,
                }
            )
    async with database.transaction() as connection:
        await reset(connection)
        await connection.execute(insert(buckets), rows)


def split(rows: dict[str, Any], amount_minor: int) -> list[tuple[Any, int, int]] | None:
    """(bucket row, portion, new stored value) along the hierarchy; None when the pool cannot pay."""
    portions = []
    left = amount_minor
    for quota_type in HIERARCHY:
        row = rows[quota_type]
        if left == 0:
            break
        if quota_type == "postpaid":
            take = min(left, row.limit_minor - row.value_minor)
            new_value = row.value_minor + take
        else:
            take = min(left, row.value_minor)
            new_value = row.value_minor - take
        if take > 0:
            portions.append((row, take, new_value))
            left -= take
    return None if left else portions


async def _log(connection: AsyncConnection, message: Message, portions: list[tuple[Any, int, int]]) -> None:
    """The deduction's row; its unique (company, unique_code) index makes a repeat fail."""
    await connection.execute(
        insert(deductions).values(
            company_id=message.company_id,
            unique_code=message.unique_code,
            waba_id=message.waba_id,
            amount_minor=message.amount_minor,
            credited_to=f"wa_balance_{portions[0][0].quota_type}",
        )
    )


@dataclass(slots=True)
class BaselineDeducter:
    """One deduction the RFC's way; `guarded=False` is the broken variant (lost updates)."""

    database: Database
    guarded: bool = True
    # Only for the broken variant in tests: widen the read → write window so writers overlap.
    read_write_gap_seconds: float = 0.0

    async def deduct(self, message: Message, stats: SenderStats) -> Outcome:
        """Try once plus MAX_RETRIES retries; 'requeue' when every try lost the race."""
        for attempt in range(1 + MAX_RETRIES):
            if attempt:
                stats.retries += 1
            try:
                return await self._attempt(message)
            except _Conflict:
                stats.conflicts += 1
        return "requeue"

    async def _attempt(self, message: Message) -> Outcome:
        company_id = message.company_id
        try:
            async with self.database.transaction() as connection:
                read = await connection.execute(select(buckets).where(buckets.c.company_id == company_id))
                rows = {row.quota_type: row for row in read}
                portions = split(rows, message.amount_minor)
                if portions is None:
                    return "rejected"
                if self.read_write_gap_seconds:
                    await asyncio.sleep(self.read_write_gap_seconds)
                for row, _take, new_value in portions:
                    await self._write(connection, row, new_value)
                await _log(connection, message, portions)
        except UniqueConflict:
            return "replayed"  # the unique index caught a repeat of the unique_code
        return "applied"

    async def _write(self, connection: AsyncConnection, row: Any, new_value: int) -> None:
        statement = update(buckets).values(value_minor=new_value, lock_version=buckets.c.lock_version + 1)
        if self.guarded:
            statement = statement.where((buckets.c.id == row.id) & (buckets.c.lock_version == row.lock_version))
        else:
            statement = statement.where(buckets.c.id == row.id)
        if (await connection.execute(statement)).rowcount == 0:
            raise _Conflict


@dataclass(slots=True)
class LockingDeducter:
    """One deduction per transaction under the pool's row locks (pessimistic)."""

    database: Database

    async def deduct(self, message: Message, stats: SenderStats) -> Outcome:
        company_id = message.company_id
        try:
            async with self.database.transaction() as connection:
                # In id order, so two deductions of one pool never take its rows in opposite orders (deadlock).
                query = select(buckets).where(buckets.c.company_id == company_id).order_by(buckets.c.id)
                if connection.dialect.name == "postgresql":
                    query = query.with_for_update()
                rows = {row.quota_type: row for row in await connection.execute(query)}
                portions = split(rows, message.amount_minor)
                if portions is None:
                    return "rejected"
                for row, _take, new_value in portions:
                    await connection.execute(
                        update(buckets).where(buckets.c.id == row.id).values(value_minor=new_value)
                    )
                await _log(connection, message, portions)
        except UniqueConflict:
            return "replayed"
        return "applied"


async def send(
    deducter: BaselineDeducter | LockingDeducter, queue: list[Message], stats: SenderStats, deadline: Deadline
) -> None:
    """One sender: its own queue, one message at a time; a requeued message goes to the back.

    A deduction's latency runs from its first try to its success, so it includes
    the time a requeued message waits behind the rest of the queue. Past the
    deadline no new message is started and a requeued one is dropped as
    unfinished (it wrote nothing), so a contended cell ends in bounded time;
    its wait so far still counts as its latency (a lower bound of the truth).
    """
    pending = deque(queue)
    first_tried: dict[str, float] = {}
    while pending:
        message = pending.popleft()
        if deadline.passed():
            if message.unique_code in first_tried:
                stats.unfinished += 1
                stats.latencies_seconds.append(time.perf_counter() - first_tried[message.unique_code])
            continue
        if message.unique_code not in first_tried:
            first_tried[message.unique_code] = time.perf_counter()
            stats.sent += 1
        started = first_tried[message.unique_code]
        stats.calls += 1
        try:
            outcome = await deducter.deduct(message, stats)
        except Exception as error:  # counted and reported; the check fails on any error
            stats.note_error(error)
            continue
        if outcome == "requeue":
            stats.requeues += 1
            pending.append(message)
            continue
        stats.latencies_seconds.append(time.perf_counter() - started)
        if outcome == "applied":
            stats.applied += 1
        elif outcome == "replayed":
            stats.replayed += 1
        else:
            stats.rejected += 1


async def check(database: Database, *, applied: int) -> Check:
    """Money conserved per pool (deduction rows = bucket decrease), postpaid within limit, codes once."""
    result = Check()
    async with database.read() as connection:
        bucket_rows = (await connection.execute(select(buckets))).all()
        per_company = {
            row.company_id: (row.rows, row.amount)
            for row in await connection.execute(
                select(
                    deductions.c.company_id,
                    func.count().label("rows"),
                    func.sum(deductions.c.amount_minor).label("amount"),
                ).group_by(deductions.c.company_id)
            )
        }
        repeated = (
            await connection.execute(
                select(deductions.c.company_id, deductions.c.unique_code, func.count().label("times"))
                .group_by(deductions.c.company_id, deductions.c.unique_code)
                .having(func.count() > 1)
            )
        ).all()
    decrease: dict[int, int] = {}
    for row in bucket_rows:
        change = row.value_minor - row.start_value_minor
        decrease[row.company_id] = decrease.get(row.company_id, 0) + (
            change if row.quota_type == "postpaid" else -change
        )
        if row.quota_type == "postpaid" and row.value_minor > row.limit_minor:
            result.violations.append(
                f"company {row.company_id}: postpaid used {row.value_minor} is past its limit {row.limit_minor}"
            )
        if row.quota_type != "postpaid" and row.value_minor < 0:
            result.violations.append(f"company {row.company_id}: {row.quota_type} is negative ({row.value_minor})")
    rows_total = sum(count for count, _ in per_company.values())
    amount_total = sum(int(amount or 0) for _, amount in per_company.values())
    for company_id, taken in sorted(decrease.items()):
        logged = int(per_company.get(company_id, (0, 0))[1] or 0)
        if logged != taken:
            result.violations.append(
                f"company {company_id}: deduction rows sum to {logged} but the buckets fell by {taken} "
                f"({logged - taken} lost)"
            )
    for row in repeated:
        result.violations.append(f"company {row.company_id}: unique_code {row.unique_code} logged {row.times} times")
    if rows_total != applied:
        result.violations.append(f"senders applied {applied} deductions but {rows_total} rows were written")
    result.figures = {
        "deduction_rows": rows_total,
        "deduction_amount_minor": amount_total,
        "bucket_decrease_minor": sum(decrease.values()),
        "pools": len(decrease),
    }
    return result
