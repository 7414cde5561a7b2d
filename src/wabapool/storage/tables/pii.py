"""The PII keys stored data needs, and where a key rotation got to."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    String,
    Table,
)

from wabapool.storage.tables.base import metadata
from wabapool.storage.types import UTCDateTime

# The PII keys stored data needs: `seal` key ids that values are sealed under, and the `hash` key id
# the search and payload hashes are keyed by. Start-up refuses a key set that lacks one (0005).
pii_keys_in_use = Table(
    "pii_keys_in_use",
    metadata,
    Column("purpose", String(8), primary_key=True),
    Column("key_id", String(64), primary_key=True),
    Column("recorded_at", UTCDateTime, nullable=False),
)

# Where `wabapool pii rotate` got to, per target (sealing key, hash key): a stopped run resumes (0005).
pii_rotations = Table(
    "pii_rotations",
    metadata,
    Column("seal_key_id", String(64), primary_key=True),
    Column("hash_key_id", String(64), primary_key=True),
    Column("last_id", BigInteger, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
)
