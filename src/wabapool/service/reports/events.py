"""Billing events (the alert history) with their webhook delivery state, newest first, keyset pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.json_types import JSONObject, JSONValue
from wabapool.storage.types import Record

EVENT_PAGE_MAX = 200


def event_position(position: list[JSONValue]) -> tuple[datetime, int]:
    """A decoded `billing_events` cursor as a keyset position; anything else is `invalid_request`."""
    try:
        created_at, row_id = position
        return datetime.fromisoformat(created_at), int(row_id)
    except (ValueError, TypeError) as exc:
        raise BillingError(
            Rejection.INVALID_REQUEST, "cursor is not one this API returned", {"field": "cursor"}
        ) from exc


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where an event's webhook delivery stands (derived from the outbox row, see `delivery_of`)."""

    state: str  # pending | delivered | failed | dead
    attempts: int
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class EventRow:
    id: str
    type: str
    created_at: datetime
    data: JSONObject
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class EventPage:
    rows: list[EventRow]
    next_cursor: str | None


# Names another branch may give the dead-letter mark on outbox_events; whichever exists is read.
DEAD_LETTER_TIME_COLUMNS = ("dead_lettered_at", "dead_letter_at", "dead_at")
DEAD_LETTER_STATE_COLUMNS = ("state", "status")
LAST_ERROR_MAX_CHARS = 500


def delivery_of(row: Record) -> Delivery:
    """Delivered when `delivered_at` is set; dead when a dead-letter mark is set, or when it failed and no
    attempt is scheduled any more; failed (retrying) when it has been tried; pending before the first try."""
    fields = row._mapping
    dead = any(fields.get(name) is not None for name in DEAD_LETTER_TIME_COLUMNS) or any(
        str(fields.get(name) or "").lower() in ("dead", "dead_letter", "dead_lettered")
        for name in DEAD_LETTER_STATE_COLUMNS
    )
    attempts = int(fields.get("attempts") or 0)
    next_attempt_at = fields.get("next_attempt_at")
    if fields.get("delivered_at") is not None:
        state = "delivered"
    elif dead or (attempts > 0 and next_attempt_at is None):
        state = "dead"
    elif attempts > 0:
        state = "failed"
    else:
        state = "pending"
    last_error = fields.get("last_error")
    return Delivery(
        state=state,
        attempts=attempts,
        delivered_at=fields.get("delivered_at"),
        next_attempt_at=None if state in ("delivered", "dead") else next_attempt_at,
        last_error=last_error[:LAST_ERROR_MAX_CHARS] if last_error else None,
    )
