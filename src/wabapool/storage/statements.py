"""Cycle statements: what a closed cycle did (read), its statements (written), and the list (read).

Which statements a closing cycle gets is decided by the service with the domain rules
(`domain.statements.closed_by`, from `cycle_activity`); they are written by `changes.write_changes`
with the rest of the transaction's changes (`insert_statements`), at most once per package and cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain import statements as statement_rules
from wabapool.domain.pool import MoveKind
from wabapool.storage import ledger as ledger_store
from wabapool.storage.pools import LockedPool
from wabapool.storage.tables import (
    cycle_statements,
    deduction_requests,
    ledger_entries,
    organization_packages,
    whatsapp_packages,
)
from wabapool.storage.types import Record
from wabapool.storage.upsert import insert_for

LIST_MAX_ROWS = 120


async def cycle_activity(connection: AsyncConnection, pool: LockedPool) -> statement_rules.CycleActivity:
    """What the locked pool's stored cycle did: bucket changes, spend of its own WABAs, deductions."""
    start = pool.state.cycle_start
    company_id = pool.state.company_id
    e = ledger_entries
    changes = await connection.execute(
        select(e.c.quota_type, func.sum(e.c.bucket_after_minor - e.c.bucket_before_minor))
        .where(
            (e.c.company_id == company_id)
            & (e.c.created_at >= start)
            & (e.c.cycle_start == start)
            & (e.c.organization_package_id == pool.package_id)
            & (e.c.kind != MoveKind.RESET.value)
        )
        .group_by(e.c.quota_type)
    )
    d = deduction_requests
    count = await connection.execute(
        select(func.count())
        .select_from(d)
        .where(
            (d.c.company_id == company_id)
            & (d.c.created_at >= start)
            & (d.c.cycle_start == start)
            & (d.c.organization_package_id == pool.package_id)
        )
    )
    # The package's own WABAs only: a v2 company's packages share the company's spend table.
    members = set(
        (
            await connection.execute(
                select(whatsapp_packages.c.waba_id).where(
                    (whatsapp_packages.c.company_id == company_id)
                    & (whatsapp_packages.c.organization_package_id == pool.package_id)
                )
            )
        ).scalars()
    )
    spent = await ledger_store.waba_spend(connection, company_id=company_id, cycle_start=start)
    return statement_rules.CycleActivity(
        bucket_changes={row[0]: int(row[1] or 0) for row in changes},
        spent_by_waba={waba_id: amount for waba_id, amount in spent.items() if waba_id in members},
        deductions_count=int(count.scalar() or 0),
    )


def _row(statement: statement_rules.Statement, pool: LockedPool, at: datetime) -> dict[str, object]:
    return {
        "company_id": statement.company_id,
        "organization_package_id": pool.package_id,
        "cycle_start": statement.cycle_start,
        "cycle_end": statement.cycle_end,
        "currency": pool.currency,
        "allowance_minor": statement.allowance_minor,
        "postpaid_limit_minor": statement.postpaid_limit_minor,
        "opening_initial_minor": statement.opening.initial_remaining,
        "opening_additional_minor": statement.opening.additional_remaining,
        "opening_postpaid_used_minor": statement.opening.postpaid_used,
        "closing_initial_minor": statement.closing.initial_remaining,
        "closing_additional_minor": statement.closing.additional_remaining,
        "closing_postpaid_used_minor": statement.closing.postpaid_used,
        "spent_minor": statement.spent_minor,
        "spent_by_waba": statement.spent_by_waba,
        "deductions_count": statement.deductions_count,
        "created_at": at,
    }


async def insert_statements(
    connection: AsyncConnection, *, pool: LockedPool, statements: Sequence[statement_rules.Statement], at: datetime
) -> None:
    """Store the statements of cycles the locked pool closed; a second writer's (same package and cycle) is a no-op."""
    for statement in statements:
        insert = insert_for(connection, cycle_statements).values(_row(statement, pool, at))
        await connection.execute(
            insert.on_conflict_do_nothing(index_elements=["company_id", "organization_package_id", "cycle_start"])
        )


async def list_statements(
    connection: AsyncConnection,
    company_id: int,
    *,
    limit: int = 24,
    before: tuple[datetime, int | None] | None = None,
) -> Sequence[Record]:
    """A company's statements, newest cycle first (one per package and cycle), with the package's WABA (v2).

    `before` is where the previous page ended: (cycle start, statement id); a
    cycle start alone (an older cursor) pages past that whole cycle.
    """
    s = cycle_statements
    query = (
        select(s, organization_packages.c.waba_id)
        .join(
            organization_packages,
            (organization_packages.c.company_id == s.c.company_id)
            & (organization_packages.c.id == s.c.organization_package_id),
        )
        .where(s.c.company_id == company_id)
        .order_by(s.c.cycle_start.desc(), s.c.id.desc())
    )
    if before is not None:
        start, last_id = before
        query = query.where(
            (s.c.cycle_start < start)
            if last_id is None
            else or_(s.c.cycle_start < start, and_(s.c.cycle_start == start, s.c.id < last_id))
        )
    return list(await connection.execute(query.limit(min(max(limit, 1), LIST_MAX_ROWS))))


async def any_cycle_due(connection: AsyncConnection, *, at: datetime) -> bool:
    """Whether some pool's cycle has ended by `at` (the worker then runs the reset): a scan of every company."""
    p = organization_packages
    due = select(p.c.id).where((p.c.cycle_end <= at) & p.c.closed_at.is_(None)).limit(1)
    return (await connection.execute(due)).first() is not None
