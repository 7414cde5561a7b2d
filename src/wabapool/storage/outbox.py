"""The outbox as the worker sees it: claim a company's oldest pending event, record each attempt.

States (one of, SPEC section 4): pending (none of the below), delivered (`delivered_at`), dead
(`dead_at`: the last attempt failed, or 410), skipped (`skipped_at`: the company had no webhook, or it
was disabled, when the event came up; kept, listed, replayable). Only a company's head (its oldest
pending event) is ever claimed, so a failing event holds back that company's later ones and no
other company's. A claim is a lease: if the worker dies, the lease runs out and another worker sends
the same event (same `event_id`) again. Storage functions never commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import FromClause, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from wabapool.domain.json_types import JSONObject
from wabapool.storage import pg
from wabapool.storage.tables import companies, outbox_events
from wabapool.storage.types import Record

_heads = outbox_events.alias("heads")
LIST_MAX_ROWS = 1_000
# Company heads looked at per claim (oldest first); more companies with due events wait for the next claim.
HEADS_SCANNED_MAX = 5_000


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    SKIPPED = "skipped"


def _pending(table: FromClause) -> ColumnElement[bool]:
    return and_(table.c.delivered_at.is_(None), table.c.dead_at.is_(None), table.c.skipped_at.is_(None))


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    """A claimed event with what it takes to send it."""

    id: int
    event_id: str
    company_id: int
    event_type: str
    payload: JSONObject
    created_at: datetime
    attempts: int
    claim_token: str
    webhook_url: str | None
    webhook_secret: str | None
    webhook_disabled_at: datetime | None


async def claim_heads(
    connection: AsyncConnection, *, now: datetime, lease_until: datetime, token: str, limit: int
) -> list[ClaimedEvent]:
    """Lease up to `limit` due company heads (one per company), oldest first; counts the attempt."""
    o = outbox_events
    # Each company's head: an index-only pass over the partial index of pending events (company_id, id).
    # Asked first and on its own: as a subquery of the locking query the planner rescans it per row.
    heads = (
        select(func.min(_heads.c.id))
        .where(_pending(_heads))
        .group_by(_heads.c.company_id)
        .order_by(func.min(_heads.c.id))
        .limit(HEADS_SCANNED_MAX)
    )
    head_ids = list((await connection.execute(heads)).scalars())
    if not head_ids:
        return []
    candidates = (
        select(o.c.id)
        .where(
            o.c.id.in_(head_ids),
            _pending(o),
            func.coalesce(o.c.next_attempt_at, o.c.created_at) <= now,
            or_(o.c.claimed_until.is_(None), o.c.claimed_until <= now),
        )
        .order_by(o.c.id)
        .limit(limit)
    )
    if pg.is_postgresql(connection):
        # Workers never wait for each other: a head another worker is claiming is skipped.
        candidates = candidates.with_for_update(skip_locked=True, of=o)
    ids = list((await connection.execute(candidates)).scalars())
    if not ids:
        return []
    await connection.execute(
        update(o).where(o.c.id.in_(ids)).values(claimed_until=lease_until, claim_token=token, attempts=o.c.attempts + 1)
    )
    rows = await connection.execute(
        select(
            o.c.id,
            o.c.event_id,
            o.c.company_id,
            o.c.event_type,
            o.c.payload,
            o.c.created_at,
            o.c.attempts,
            companies.c.webhook_url,
            companies.c.webhook_secret,
            companies.c.webhook_disabled_at,
        )
        .select_from(o.outerjoin(companies, companies.c.company_id == o.c.company_id))
        .where(o.c.id.in_(ids))
        .order_by(o.c.id)
    )
    return [
        ClaimedEvent(
            id=row.id,
            event_id=row.event_id,
            company_id=row.company_id,
            event_type=row.event_type,
            payload=row.payload,
            created_at=row.created_at,
            attempts=row.attempts,
            claim_token=token,
            webhook_url=row.webhook_url,
            webhook_secret=row.webhook_secret,
            webhook_disabled_at=row.webhook_disabled_at,
        )
        for row in rows
    ]


def _released(**values: object) -> dict[str, object]:
    return {"claimed_until": None, "claim_token": None, **values}


async def record_delivered(connection: AsyncConnection, event: ClaimedEvent, *, status: int, at: datetime) -> bool:
    """The receiver answered 2xx. A delivery is a fact: recorded even if the lease ran out meanwhile."""
    o = outbox_events
    result = await connection.execute(
        update(o)
        .where((o.c.company_id == event.company_id) & (o.c.id == event.id) & _pending(o))
        .values(_released(delivered_at=at, last_status=status, last_error=None))
    )
    return bool(result.rowcount)


def _still_ours(event: ClaimedEvent) -> ColumnElement[bool]:
    o = outbox_events
    mine = (o.c.company_id == event.company_id) & (o.c.id == event.id)
    return mine & (o.c.claim_token == event.claim_token) & _pending(o)


async def record_retry(
    connection: AsyncConnection, event: ClaimedEvent, *, status: int | None, error: str, next_attempt_at: datetime
) -> bool:
    """A failed attempt to be tried again at `next_attempt_at` (ignored if another worker took it over)."""
    result = await connection.execute(
        update(outbox_events)
        .where(_still_ours(event))
        .values(_released(next_attempt_at=next_attempt_at, last_status=status, last_error=error))
    )
    return bool(result.rowcount)


async def record_dead(
    connection: AsyncConnection, event: ClaimedEvent, *, status: int | None, error: str, at: datetime
) -> bool:
    """The last attempt failed (or the receiver said 410): a dead letter, kept with its last error."""
    result = await connection.execute(
        update(outbox_events)
        .where(_still_ours(event))
        .values(_released(dead_at=at, next_attempt_at=None, last_status=status, last_error=error))
    )
    return bool(result.rowcount)


async def record_skipped(connection: AsyncConnection, event: ClaimedEvent, *, reason: str, at: datetime) -> bool:
    """Nowhere to send it (no webhook, or disabled): kept as skipped, never lost; `events replay` re-queues it."""
    result = await connection.execute(
        update(outbox_events)
        .where(_still_ours(event))
        # Nothing was sent: the attempt the claim counted is taken back.
        .values(
            _released(skipped_at=at, next_attempt_at=None, last_error=reason, attempts=outbox_events.c.attempts - 1)
        )
    )
    return bool(result.rowcount)


async def disable_webhook(connection: AsyncConnection, company_id: int, *, at: datetime) -> None:
    """The receiver answered 410 Gone: stop sending until the webhook is set again."""
    await connection.execute(
        update(companies).where(companies.c.company_id == company_id).values(webhook_disabled_at=at)
    )


async def replay(connection: AsyncConnection, event_id: str, *, at: datetime) -> bool:
    """Put a dead (or skipped) event back in the queue with its original id; False if there is none."""
    o = outbox_events
    finished_undelivered = o.c.delivered_at.is_(None) & (o.c.dead_at.isnot(None) | o.c.skipped_at.isnot(None))
    result = await connection.execute(
        update(o)
        .where((o.c.event_id == event_id) & finished_undelivered)
        .values(_released(dead_at=None, skipped_at=None, attempts=0, next_attempt_at=at))
    )
    return bool(result.rowcount)


def state_of(row: Record) -> DeliveryState:
    """The delivery state of an outbox row."""
    if row.delivered_at is not None:
        return DeliveryState.DELIVERED
    if row.dead_at is not None:
        return DeliveryState.DEAD
    if row.skipped_at is not None:
        return DeliveryState.SKIPPED
    return DeliveryState.PENDING


_STATE_FILTERS: dict[DeliveryState, Callable[[FromClause], ColumnElement[bool]]] = {
    DeliveryState.PENDING: lambda o: _pending(o),
    DeliveryState.DELIVERED: lambda o: o.c.delivered_at.isnot(None),
    DeliveryState.DEAD: lambda o: o.c.dead_at.isnot(None),
    DeliveryState.SKIPPED: lambda o: o.c.skipped_at.isnot(None),
}


async def list_events(
    connection: AsyncConnection,
    *,
    company_id: int | None = None,
    state: DeliveryState | None = None,
    limit: int = 50,
) -> Sequence[Record]:
    """Events newest first, optionally of one company and one state."""
    o = outbox_events
    query = select(o).order_by(o.c.id.desc()).limit(min(max(limit, 1), LIST_MAX_ROWS))
    if company_id is not None:
        query = query.where(o.c.company_id == company_id)
    if state is not None:
        query = query.where(_STATE_FILTERS[state](o))
    return list(await connection.execute(query))


async def get_event(connection: AsyncConnection, event_id: str) -> Record | None:
    return (await connection.execute(select(outbox_events).where(outbox_events.c.event_id == event_id))).first()


async def oldest_pending_created_at(connection: AsyncConnection) -> datetime | None:
    """When the oldest event still waiting was raised (the outbox lag's start)."""
    o = outbox_events
    value: datetime | None = (await connection.execute(select(func.min(o.c.created_at)).where(_pending(o)))).scalar()
    return value
