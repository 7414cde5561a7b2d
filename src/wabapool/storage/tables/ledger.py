"""Money moved: deduction requests, refunds, payments, the ledger entries and spend per WABA per cycle."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
)

from wabapool.storage.tables.base import company_key, id_column, metadata
from wabapool.storage.types import UTCDateTime

deduction_requests = Table(
    "deduction_requests",
    metadata,
    id_column(),
    Column("company_id", BigInteger, nullable=False),
    company_key(),
    Column("unique_code", String(128), nullable=False),
    Column("organization_package_id", BigInteger, nullable=False),
    Column("waba_id", String(32), nullable=False),
    Column("billing_code", String(64), nullable=False),
    Column("deduction_code", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_minor", BigInteger, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("market", String(8)),
    Column("value_before_minor", BigInteger, nullable=False),
    Column("value_after_minor", BigInteger, nullable=False),
    Column("credited_to", String(48)),
    Column("allocations", JSON, nullable=False),
    Column("payload_hash", String(64), nullable=False),
    Column("cycle_start", UTCDateTime, nullable=False),
    Column("service_name", String(64)),
    Column("broadcast_id", String(64)),
    Column("message_id", String(128)),
    Column("category", String(48)),
    Column("customer_name_enc", LargeBinary),
    Column("phone_number_enc", LargeBinary),
    Column("phone_number_hash", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("company_id", "unique_code", name="uq_deduction_requests_company_code"),
    Index("ix_deduction_requests_company_created", "company_id", "created_at", "id"),
    Index("ix_deduction_requests_company_waba_created", "company_id", "waba_id", "created_at", "id"),
    Index("ix_deduction_requests_company_broadcast", "company_id", "broadcast_id"),
    # Exact-match phone search (the keyed hash), newest first (0005).
    Index("ix_deduction_requests_company_phone", "company_id", "phone_number_hash", "created_at", "id"),
)

refunds = Table(
    "refunds",
    metadata,
    id_column(),
    Column("company_id", BigInteger, nullable=False),
    company_key(),
    Column("refund_code", String(128), nullable=False),
    Column("deduction_request_id", BigInteger, nullable=False),
    Column("reason", String(200)),
    Column("amount_minor", BigInteger, nullable=False),
    Column("allocations", JSON, nullable=False),
    Column("value_before_minor", BigInteger, nullable=False),
    Column("value_after_minor", BigInteger, nullable=False),
    Column("service_name", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("company_id", "refund_code", name="uq_refunds_company_code"),
    UniqueConstraint("company_id", "deduction_request_id", name="uq_refunds_company_deduction"),
    ForeignKeyConstraint(
        ["company_id", "deduction_request_id"],
        ["deduction_requests.company_id", "deduction_requests.id"],
        name="fk_refunds_deduction",
    ),
    # Refunds are rows of their own in the logs, newest first (0005).
    Index("ix_refunds_company_created", "company_id", "created_at", "id"),
)

payments = Table(
    "payments",
    metadata,
    id_column(),
    Column("company_id", BigInteger, nullable=False),
    company_key(),
    Column("kind", String(16), nullable=False),
    Column("payment_reference", String(128), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("allocations", JSON, nullable=False),
    Column("value_before_minor", BigInteger, nullable=False),
    Column("value_after_minor", BigInteger, nullable=False),
    Column("service_name", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    # One payment reference is one payment, whichever kind it was used for.
    UniqueConstraint("company_id", "payment_reference", name="uq_payments_company_reference"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    id_column(),
    Column("company_id", BigInteger, nullable=False),
    company_key(),
    Column("organization_package_id", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("quota_type", String(16), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("bucket_before_minor", BigInteger, nullable=False),
    Column("bucket_after_minor", BigInteger, nullable=False),
    Column("total_before_minor", BigInteger, nullable=False),
    Column("total_after_minor", BigInteger, nullable=False),
    Column("waba_id", String(32)),
    Column("deduction_request_id", BigInteger),
    Column("reference", String(128), nullable=False),
    Column("cycle_start", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_ledger_entries_company_created", "company_id", "created_at"),
    Index("ix_ledger_entries_deduction", "deduction_request_id"),
)

# Spend per WABA per cycle, kept beside the ledger so the balance page is O(WABAs).
waba_cycle_spend = Table(
    "waba_cycle_spend",
    metadata,
    Column("company_id", BigInteger, primary_key=True),
    Column("waba_id", String(32), primary_key=True),
    Column("cycle_start", UTCDateTime, primary_key=True),
    Column("spent_minor", BigInteger, nullable=False),
    # The part of it its spending cap covers (domain.caps), kept only while the WABA has a cap: setting
    # one computes it from the cycle's deductions, each deduction and refund moves it (0009).
    Column("capped_spent_minor", BigInteger, nullable=False, server_default="0"),
)
