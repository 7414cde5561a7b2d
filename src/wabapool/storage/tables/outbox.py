"""Events waiting for delivery, written in the transaction of the change that raised them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from wabapool.storage.tables.base import company_key, id_column, metadata
from wabapool.storage.types import UTCDateTime

OUTBOX_PENDING_SQL = "delivered_at IS NULL AND dead_at IS NULL AND skipped_at IS NULL"


outbox_events = Table(
    "outbox_events",
    metadata,
    id_column(),
    Column("event_id", String(36), nullable=False),
    Column("company_id", BigInteger, nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("dedup_key", String(160)),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime),
    Column("last_error", Text),
    # Delivery state (worker): an event is pending until exactly one of delivered_at, dead_at, skipped_at is set.
    Column("last_status", SmallInteger),
    Column("dead_at", UTCDateTime),
    Column("skipped_at", UTCDateTime),
    Column("claimed_until", UTCDateTime),
    Column("claim_token", String(36)),
    company_key(),
    # Event ids lead: `wabapool events replay EVENT_ID` finds an event by its id alone.
    UniqueConstraint("event_id", "company_id", name="uq_outbox_events_event_company"),
    UniqueConstraint("company_id", "event_type", "dedup_key", name="uq_outbox_events_company_type_dedup"),
    Index("ix_outbox_events_pending", "delivered_at", "next_attempt_at"),
    Index("ix_outbox_events_company_created", "company_id", "created_at"),
    # A company's oldest pending event is its head; only heads are claimed (per-company order).
    Index(
        "ix_outbox_events_company_pending",
        "company_id",
        "id",
        postgresql_where=text(OUTBOX_PENDING_SQL),
        sqlite_where=text(OUTBOX_PENDING_SQL),
    ),
)
