"""The outbox as operators see it: events with their delivery state, dead letters, replay, lag."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from wabapool.domain.json_types import JSONObject
from wabapool.storage import outbox as outbox_store
from wabapool.storage.database import Database
from wabapool.storage.outbox import DeliveryState as DeliveryState
from wabapool.storage.types import Record


@dataclass(frozen=True, slots=True)
class EventView:
    event_id: str
    company_id: int
    event_type: str
    dedup_key: str | None
    payload: JSONObject
    created_at: datetime
    state: DeliveryState
    attempts: int
    last_status: int | None
    last_error: str | None


def _view(row: Record) -> EventView:
    return EventView(
        event_id=row.event_id,
        company_id=row.company_id,
        event_type=row.event_type,
        dedup_key=row.dedup_key,
        payload=dict(row.payload),
        created_at=row.created_at,
        state=outbox_store.state_of(row),
        attempts=row.attempts,
        last_status=row.last_status,
        last_error=row.last_error,
    )


async def list_events(
    database: Database, *, company_id: int | None = None, state: DeliveryState | None = None, limit: int = 50
) -> list[EventView]:
    """Events newest first, optionally of one company and one delivery state."""
    async with database.read() as connection:
        rows = await outbox_store.list_events(connection, company_id=company_id, state=state, limit=limit)
    return [_view(row) for row in rows]


async def replay(database: Database, event_id: str, *, at: datetime) -> tuple[bool, EventView | None]:
    """Queue a dead (or skipped) event again with its original id: (whether it was, the event as it stands)."""
    async with database.transaction() as connection:
        replayed = await outbox_store.replay(connection, event_id, at=at)
        row = await outbox_store.get_event(connection, event_id)
    return replayed, None if row is None else _view(row)


async def oldest_pending_created_at(database: Database) -> datetime | None:
    """When the oldest event still waiting was raised (the outbox lag's start)."""
    async with database.read() as connection:
        return await outbox_store.oldest_pending_created_at(connection)
