"""The companies, their pools (packages and buckets), their WABAs and the price list."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKeyConstraint,
    Index,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

from wabapool.storage.tables.base import company_key, id_column, metadata
from wabapool.storage.types import BigId, UTCDateTime

OPEN_POOL_SQL = "waba_id IS NULL AND closed_at IS NULL"
OPEN_WABA_PACKAGE_SQL = "waba_id IS NOT NULL AND closed_at IS NULL"
OPEN_TOP_UP_SQL = "top_up_reference IS NOT NULL"


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
    id_column(),
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
    # True once a WABA charging the package has a spending cap (0011): a group reads caps only then.
    Column("spend_caps", Boolean, nullable=False, server_default=false()),
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
    id_column(),
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
    id_column(),
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

# One row (id 1): raised with every price change, read with a group's locks (migration 0011).
price_list_versions = Table(
    "price_list_versions",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)
