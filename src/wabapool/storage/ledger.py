"""Ledger entry rows, per-WABA cycle spend reads, and the outbox rows (written by `changes.write_changes`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain.events import DomainEvent
from wabapool.domain.json_types import JSONObject
from wabapool.domain.pool import Move
from wabapool.storage.tables import ledger_entries, outbox_events, waba_cycle_spend
from wabapool.storage.upsert import insert_for


@dataclass(frozen=True, slots=True)
class EntryContext:
    """What a move belongs to: the request, the WABA, the cycle."""

    reference: str
    cycle_start: datetime
    waba_id: str | None = None
    deduction_request_id: int | None = None


class LedgerRow(NamedTuple):
    """One ledger_entries row without its id, fields in column order: COPY takes it as it is."""

    company_id: int
    organization_package_id: int
    kind: str
    quota_type: str
    amount_minor: int
    bucket_before_minor: int
    bucket_after_minor: int
    total_before_minor: int
    total_after_minor: int
    waba_id: str | None
    deduction_request_id: int | None
    reference: str
    cycle_start: datetime
    created_at: datetime


def entry_rows(
    *, company_id: int, package_id: int, moves: Iterable[Move], context: EntryContext, at: datetime
) -> list[LedgerRow]:
    # The enum members themselves: a StrEnum is a str, and `.value` is a slow descriptor.
    return [
        LedgerRow(
            company_id,
            package_id,
            entry.kind,
            entry.quota_type,
            entry.amount_minor,
            entry.bucket_before_minor,
            entry.bucket_after_minor,
            entry.total_before_minor,
            entry.total_after_minor,
            context.waba_id,
            context.deduction_request_id,
            context.reference,
            context.cycle_start,
            at,
        )
        for entry in moves
    ]


async def has_entries(connection: AsyncConnection, company_id: int) -> bool:
    """Whether any money of the company's has moved (its currency is then fixed)."""
    query = select(ledger_entries.c.id).where(ledger_entries.c.company_id == company_id).limit(1)
    return (await connection.execute(query)).first() is not None


async def waba_spend(connection: AsyncConnection, *, company_id: int, cycle_start: datetime) -> dict[str, int]:
    """Spend per WABA in one cycle."""
    rows = await connection.execute(
        select(waba_cycle_spend.c.waba_id, waba_cycle_spend.c.spent_minor).where(
            (waba_cycle_spend.c.company_id == company_id) & (waba_cycle_spend.c.cycle_start == cycle_start)
        )
    )
    return {row.waba_id: row.spent_minor for row in rows}


class OutboxRow(NamedTuple):
    """One outbox_events row of an event, fields named as its columns (the one write's events CTE takes them as
    arrays). The payload is last, as a request's allocations are: the json value goes encoded in an array."""

    event_id: str
    company_id: int
    event_type: str
    dedup_key: str | None
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    payload: JSONObject


OUTBOX_COLUMNS = OutboxRow._fields


def outbox_rows(*, company_id: int, events: Sequence[DomainEvent], at: datetime) -> list[OutboxRow]:
    """The outbox rows of a company's events, to be delivered from `at` on."""
    return [
        OutboxRow(
            str(uuid.uuid4()),
            company_id,
            domain_event.event_type.value,
            domain_event.dedup_key,
            at,
            0,
            at,
            {**domain_event.payload, "occurred_at": at.isoformat()},
        )
        for domain_event in events
    ]


async def emit_events(
    connection: AsyncConnection, *, company_id: int, events: Sequence[DomainEvent], at: datetime
) -> None:
    """Outbox rows in the caller's transaction; a repeated dedup key is dropped, not an error."""
    for row in outbox_rows(company_id=company_id, events=events, at=at):
        statement = insert_for(connection, outbox_events).values(row._asdict())
        await connection.execute(statement.on_conflict_do_nothing())
