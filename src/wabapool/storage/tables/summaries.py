"""What was spent, summed: one statement per closed cycle, spend and messages per WABA per day."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    Integer,
    String,
    Table,
    UniqueConstraint,
)

from wabapool.storage.tables.base import company_key, id_column, metadata
from wabapool.storage.types import UTCDateTime

# One statement per closed cycle of a pool, written in the transaction that closes the cycle.
cycle_statements = Table(
    "cycle_statements",
    metadata,
    id_column(),
    Column("company_id", BigInteger, nullable=False),
    company_key(),
    Column("organization_package_id", BigInteger, nullable=False),
    Column("cycle_start", UTCDateTime, nullable=False),
    Column("cycle_end", UTCDateTime, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("allowance_minor", BigInteger, nullable=False),
    Column("postpaid_limit_minor", BigInteger, nullable=False),
    Column("opening_initial_minor", BigInteger, nullable=False),
    Column("opening_additional_minor", BigInteger, nullable=False),
    Column("opening_postpaid_used_minor", BigInteger, nullable=False),
    Column("closing_initial_minor", BigInteger, nullable=False),
    Column("closing_additional_minor", BigInteger, nullable=False),
    Column("closing_postpaid_used_minor", BigInteger, nullable=False),
    Column("spent_minor", BigInteger, nullable=False),
    Column("spent_by_waba", JSON, nullable=False),
    Column("deductions_count", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint(
        "company_id", "organization_package_id", "cycle_start", name="uq_cycle_statements_company_package_cycle"
    ),
)

# Spend and messages per WABA per day (company timezone), kept in the deduction's and the refund's
# transaction so the usage series is O(days x WABAs), not a scan of the requests (0005).
waba_daily_usage = Table(
    "waba_daily_usage",
    metadata,
    Column("company_id", BigInteger, primary_key=True),
    Column("waba_id", String(32), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("spent_minor", BigInteger, nullable=False),
    Column("messages", BigInteger, nullable=False),
)
