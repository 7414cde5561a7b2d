"""A WABA's spending cap per cycle, and every change of it (0009)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKeyConstraint,
    Index,
    SmallInteger,
    String,
    Table,
)

from wabapool.storage.tables.base import metadata
from wabapool.storage.types import UTCDateTime

# A WABA's spending cap per cycle (rule 3.11, domain.caps): at most one per WABA, NULL categories = all.
# `*_cycle_start` says in which cycle its warning and its reach were last raised (once per cycle) (0009).
waba_spend_caps = Table(
    "waba_spend_caps",
    metadata,
    Column("company_id", BigInteger, primary_key=True),
    Column("waba_id", String(32), primary_key=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("categories", JSON),
    Column("warn_percent", SmallInteger, nullable=False),
    Column("warned_cycle_start", UTCDateTime),
    Column("reached_cycle_start", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    ForeignKeyConstraint(
        ["company_id", "waba_id"],
        ["whatsapp_packages.company_id", "whatsapp_packages.waba_id"],
        name="fk_waba_spend_caps_waba",
    ),
)

# Every change of a WABA's cap: who, when, the cap before and after (NULL: none) (0009).
waba_spend_cap_changes = Table(
    "waba_spend_cap_changes",
    metadata,
    Column("company_id", BigInteger, primary_key=True),
    Column("change_id", String(36), primary_key=True),
    Column("waba_id", String(32), nullable=False),
    # "service:NAME" for provisioning, "user:SUBJECT" (with the role) for the public API.
    Column("changed_by", String(200), nullable=False),
    Column("old_cap", JSON),
    Column("new_cap", JSON),
    Column("changed_at", UTCDateTime, nullable=False),
    ForeignKeyConstraint(
        ["company_id", "waba_id"],
        ["whatsapp_packages.company_id", "whatsapp_packages.waba_id"],
        name="fk_waba_spend_cap_changes_waba",
    ),
    Index("ix_waba_spend_cap_changes_company_waba", "company_id", "waba_id", "changed_at"),
)
