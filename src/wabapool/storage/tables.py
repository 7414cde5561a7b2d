"""The schema: one definition for PostgreSQL and SQLite, keyed by company_id.

Every key of a company's table includes `company_id` (migration 0008, Citus's
rule for tables distributed by company; `storage/distribution.py` lists them):
primary keys are `(company_id, id)` with `id` drawn from the table's sequence.
On SQLite `id` stays the rowid primary key (the only column SQLite
auto-increments) and the migrations add `rowid_key_<table> (company_id, id)`
for the composite foreign keys to point at.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from wabapool.storage.types import BigId, UTCDateTime

OUTBOX_PENDING_SQL = "delivered_at IS NULL AND dead_at IS NULL AND skipped_at IS NULL"
OPEN_POOL_SQL = "waba_id IS NULL AND closed_at IS NULL"
OPEN_WABA_PACKAGE_SQL = "waba_id IS NOT NULL AND closed_at IS NULL"
OPEN_TOP_UP_SQL = "top_up_reference IS NOT NULL"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def company_key() -> PrimaryKeyConstraint:
    """(company_id, id): `id` is drawn from the table's sequence (SQLite: the rowid)."""
    return PrimaryKeyConstraint("company_id", "id")


def _id() -> Column[int]:
    return Column("id", BigId, autoincrement=True, nullable=False)


companies = Table(
    "companies",
    metadata,
    Column("company_id", BigInteger, primary_key=True, autoincrement=False),
    Column("billing_version", String(8), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("show_waba_id", Boolean, nullable=False, default=False),
    Column("webhook_url", Text),
    Column("webhook_secret", Text),
    # Set when the receiver answered 410 Gone: later events are skipped until the webhook is set again.
    Column("webhook_disabled_at", UTCDateTime),
    # The company's override of the `waba_save_organization_id` flag; NULL: the global default (0006).
    Column("waba_save_organization_id", Boolean),
    # A v2 company's terms for each new WABA's own package ({allowance, postpaid_limit, cycle_anchor_day,
    # threshold_percent}), from its `package` (0006).
    Column("waba_package_terms", JSON),
    # The company's own alerts ([{kind, value}], at most 5), auto-recharge ({below, amount, max_per_cycle}) and
    # forecast warning days (NULL: 3) (domain.alerts, domain.forecast; 0010).
    Column("balance_alerts", JSON),
    Column("auto_recharge", JSON),
    Column("forecast_warning_days", SmallInteger),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

organization_packages = Table(
    "organization_packages",
    metadata,
    _id(),
    Column("company_id", BigInteger, nullable=False),
    # The WABA a package of its own belongs to (v2, or a v3 WABA with `waba_save_organization_id` off);
    # NULL for the company's shared pool (0006).
    Column("waba_id", String(32)),
    Column("cycle_anchor_day", SmallInteger, nullable=False),
    Column("cycle_start", UTCDateTime, nullable=False),
    # The current cycle's end, kept: new anchor or timezone terms apply from it (domain.cycle).
    Column("cycle_end", UTCDateTime, nullable=False),
    Column("funded_base_minor", BigInteger, nullable=False),
    Column("low_balance_armed", Boolean, nullable=False),
    Column("below_zero_cycle_start", UTCDateTime),
    # Raised by one with every committed change of the pool (storage.versions): orders the balance cache's values.
    Column("version", BigInteger, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Set when the backfill moved the package into the pool (or its rollback closed the pool): kept, never charged.
    Column("closed_at", UTCDateTime),
    # Where the package stands with the company's alerts and auto-recharge (0010): the keys of the alerts
    # fired in their current crossing, the open top-up request (reference, amount, time), requests this cycle.
    Column("alerts_fired", JSON),
    Column("top_up_reference", String(128)),
    Column("top_up_amount_minor", BigInteger),
    Column("top_up_requested_at", UTCDateTime),
    Column("top_ups_requested", SmallInteger, nullable=False, server_default="0"),
    Index(
        "ix_organization_packages_open_top_up",
        "top_up_requested_at",
        postgresql_where=text(OPEN_TOP_UP_SQL),
        sqlite_where=text(OPEN_TOP_UP_SQL),
    ),
    company_key(),
    ForeignKeyConstraint(["company_id"], ["companies.company_id"], name="fk_organization_packages_company_id"),
    Index(
        "uq_organization_packages_open_pool",
        "company_id",
        unique=True,
        postgresql_where=text(OPEN_POOL_SQL),
        sqlite_where=text(OPEN_POOL_SQL),
    ),
    Index(
        "uq_organization_packages_open_waba",
        "company_id",
        "waba_id",
        unique=True,
        postgresql_where=text(OPEN_WABA_PACKAGE_SQL),
        sqlite_where=text(OPEN_WABA_PACKAGE_SQL),
    ),
)

billing_components = Table(
    "billing_components",
    metadata,
    _id(),
    Column("company_id", BigInteger, nullable=False),
    Column("organization_package_id", BigInteger, nullable=False),
    Column("component_code", String(32), nullable=False),
    Column("threshold_running_out", Numeric(5, 2)),
    company_key(),
    ForeignKeyConstraint(
        ["company_id", "organization_package_id"],
        ["organization_packages.company_id", "organization_packages.id"],
        name="fk_billing_components_package",
    ),
    UniqueConstraint(
        "company_id", "organization_package_id", "component_code", name="uq_billing_components_company_package_code"
    ),
)

# One row per bucket. `balance_minor` is the bucket's stored value: remaining for
# initial/additional, used for postpaid; `limit_minor` is the allowance or the
# postpaid limit; `used_minor` is the allowance used this cycle (initial only).
quota_buckets = Table(
    "quota_buckets",
    metadata,
    Column("company_id", BigInteger, primary_key=True),
    Column("billing_component_id", BigInteger, primary_key=True),
    Column("quota_type", String(16), primary_key=True),
    Column("balance_minor", BigInteger, nullable=False),
    Column("limit_minor", BigInteger, nullable=False),
    Column("used_minor", BigInteger, nullable=False, server_default="0"),
    ForeignKeyConstraint(
        ["company_id", "billing_component_id"],
        ["billing_components.company_id", "billing_components.id"],
        name="fk_quota_buckets_component",
    ),
)

whatsapp_packages = Table(
    "whatsapp_packages",
    metadata,
    _id(),
    Column("company_id", BigInteger, nullable=False),
    Column("waba_id", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    # The RFC's index change: many WABAs per package, so indexed, not unique.
    Column("organization_package_id", BigInteger),
    Column("created_at", UTCDateTime, nullable=False),
    company_key(),
    ForeignKeyConstraint(["company_id"], ["companies.company_id"], name="fk_whatsapp_packages_company_id"),
    ForeignKeyConstraint(
        ["company_id", "organization_package_id"],
        ["organization_packages.company_id", "organization_packages.id"],
        name="fk_whatsapp_packages_package",
    ),
    UniqueConstraint("company_id", "waba_id", name="uq_whatsapp_packages_company_waba"),
    Index("ix_whatsapp_packages_company_package", "company_id", "organization_package_id"),
)

# A WABA id is Meta's global id: one company owns it. Claimed here, in the transaction that adds the WABA
# (0008); on Citus distributed by `waba_id`, so the check is one shard's primary key wherever the company is.
waba_owners = Table(
    "waba_owners",
    metadata,
    Column("waba_id", String(32), primary_key=True),
    Column("company_id", BigInteger, nullable=False),
    Column("claimed_at", UTCDateTime, nullable=False),
)

price_list = Table(
    "price_list",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("deduction_code", String(64), nullable=False),
    Column("company_id", BigInteger),
    Column("market", String(8)),
    # "company:market" with "*" for absent, so the upsert has one unique key on both databases.
    Column("scope_key", String(48), nullable=False),
    Column("unit_price_minor", BigInteger, nullable=False),
    Column("effective_from", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("deduction_code", "scope_key", "effective_from", name="uq_price_list_code_scope_from"),
)

deduction_requests = Table(
    "deduction_requests",
    metadata,
    _id(),
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
    _id(),
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
    _id(),
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
    _id(),
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

outbox_events = Table(
    "outbox_events",
    metadata,
    _id(),
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

# One statement per closed cycle of a pool, written in the transaction that closes the cycle.
cycle_statements = Table(
    "cycle_statements",
    metadata,
    _id(),
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
