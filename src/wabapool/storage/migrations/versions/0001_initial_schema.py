"""Initial schema: companies, the shared pool, WABAs, prices, requests, ledger, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 08:05:33.764405
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "companies",
        sa.Column("company_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("billing_version", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("show_waba_id", sa.Boolean(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("webhook_secret", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("company_id", name=op.f("pk_companies")),
    )
    op.create_table(
        "deduction_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("unique_code", sa.String(length=128), nullable=False),
        sa.Column("organization_package_id", sa.BigInteger(), nullable=False),
        sa.Column("waba_id", sa.String(length=32), nullable=False),
        sa.Column("billing_code", sa.String(length=64), nullable=False),
        sa.Column("deduction_code", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("market", sa.String(length=8), nullable=True),
        sa.Column("value_before_minor", sa.BigInteger(), nullable=False),
        sa.Column("value_after_minor", sa.BigInteger(), nullable=False),
        sa.Column("credited_to", sa.String(length=48), nullable=True),
        sa.Column("allocations", sa.JSON(), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("cycle_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service_name", sa.String(length=64), nullable=True),
        sa.Column("broadcast_id", sa.String(length=64), nullable=True),
        sa.Column("message_id", sa.String(length=128), nullable=True),
        sa.Column("category", sa.String(length=48), nullable=True),
        sa.Column("customer_name_enc", sa.LargeBinary(), nullable=True),
        sa.Column("phone_number_enc", sa.LargeBinary(), nullable=True),
        sa.Column("phone_number_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deduction_requests")),
        sa.UniqueConstraint("company_id", "unique_code", name="uq_deduction_requests_company_code"),
    )
    with op.batch_alter_table("deduction_requests", schema=None) as batch_op:
        batch_op.create_index("ix_deduction_requests_company_broadcast", ["company_id", "broadcast_id"], unique=False)
        batch_op.create_index("ix_deduction_requests_company_created", ["company_id", "created_at", "id"], unique=False)
        batch_op.create_index(
            "ix_deduction_requests_company_waba_created", ["company_id", "waba_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("organization_package_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("quota_type", sa.String(length=16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("bucket_before_minor", sa.BigInteger(), nullable=False),
        sa.Column("bucket_after_minor", sa.BigInteger(), nullable=False),
        sa.Column("total_before_minor", sa.BigInteger(), nullable=False),
        sa.Column("total_after_minor", sa.BigInteger(), nullable=False),
        sa.Column("waba_id", sa.String(length=32), nullable=True),
        sa.Column("deduction_request_id", sa.BigInteger(), nullable=True),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("cycle_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_entries_company_created", ["company_id", "created_at"], unique=False)
        batch_op.create_index("ix_ledger_entries_deduction", ["deduction_request_id"], unique=False)

    op.create_table(
        "outbox_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("dedup_key", sa.String(length=160), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_events_event_id")),
        sa.UniqueConstraint("event_type", "dedup_key", name="uq_outbox_events_type_dedup"),
    )
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_events_company_created", ["company_id", "created_at"], unique=False)
        batch_op.create_index("ix_outbox_events_pending", ["delivered_at", "next_attempt_at"], unique=False)

    op.create_table(
        "payments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payment_reference", sa.String(length=128), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("allocations", sa.JSON(), nullable=False),
        sa.Column("value_before_minor", sa.BigInteger(), nullable=False),
        sa.Column("value_after_minor", sa.BigInteger(), nullable=False),
        sa.Column("service_name", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("company_id", "kind", "payment_reference", name="uq_payments_company_kind_reference"),
    )
    op.create_table(
        "price_list",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("deduction_code", sa.String(length=64), nullable=False),
        sa.Column("company_id", sa.BigInteger(), nullable=True),
        sa.Column("market", sa.String(length=8), nullable=True),
        sa.Column("scope_key", sa.String(length=48), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_list")),
        sa.UniqueConstraint("deduction_code", "scope_key", "effective_from", name="uq_price_list_code_scope_from"),
    )
    op.create_table(
        "waba_cycle_spend",
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("waba_id", sa.String(length=32), nullable=False),
        sa.Column("cycle_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spent_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("company_id", "waba_id", "cycle_start", name=op.f("pk_waba_cycle_spend")),
    )
    op.create_table(
        "organization_packages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("cycle_anchor_day", sa.SmallInteger(), nullable=False),
        sa.Column("cycle_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("funded_base_minor", sa.BigInteger(), nullable=False),
        sa.Column("low_balance_armed", sa.Boolean(), nullable=False),
        sa.Column("below_zero_cycle_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.company_id"], name=op.f("fk_organization_packages_company_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization_packages")),
        sa.UniqueConstraint("company_id", name=op.f("uq_organization_packages_company_id")),
    )
    op.create_table(
        "refunds",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("refund_code", sa.String(length=128), nullable=False),
        sa.Column("deduction_request_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("allocations", sa.JSON(), nullable=False),
        sa.Column("value_before_minor", sa.BigInteger(), nullable=False),
        sa.Column("value_after_minor", sa.BigInteger(), nullable=False),
        sa.Column("service_name", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deduction_request_id"], ["deduction_requests.id"], name=op.f("fk_refunds_deduction_request_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("company_id", "refund_code", name="uq_refunds_company_code"),
        sa.UniqueConstraint("deduction_request_id", name=op.f("uq_refunds_deduction_request_id")),
    )
    op.create_table(
        "billing_components",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("organization_package_id", sa.BigInteger(), nullable=False),
        sa.Column("component_code", sa.String(length=32), nullable=False),
        sa.Column("threshold_running_out", sa.Numeric(precision=5, scale=2), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_package_id"],
            ["organization_packages.id"],
            name=op.f("fk_billing_components_organization_package_id"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_components")),
        sa.UniqueConstraint("organization_package_id", "component_code", name="uq_billing_components_package_code"),
    )
    op.create_table(
        "whatsapp_packages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("waba_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("organization_package_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.company_id"], name=op.f("fk_whatsapp_packages_company_id")),
        sa.ForeignKeyConstraint(
            ["organization_package_id"],
            ["organization_packages.id"],
            name=op.f("fk_whatsapp_packages_organization_package_id"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_whatsapp_packages")),
        sa.UniqueConstraint("company_id", "waba_id", name="uq_whatsapp_packages_company_waba"),
    )
    with op.batch_alter_table("whatsapp_packages", schema=None) as batch_op:
        # One package per WABA, as in billing v2; 0002 is the RFC's change to many WABAs per package.
        batch_op.create_index(
            batch_op.f("ix_whatsapp_packages_organization_package_id"), ["organization_package_id"], unique=True
        )

    op.create_table(
        "quota_buckets",
        sa.Column("billing_component_id", sa.BigInteger(), nullable=False),
        sa.Column("quota_type", sa.String(length=16), nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("limit_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["billing_component_id"], ["billing_components.id"], name=op.f("fk_quota_buckets_billing_component_id")
        ),
        sa.PrimaryKeyConstraint("billing_component_id", "quota_type", name=op.f("pk_quota_buckets")),
    )


def downgrade() -> None:

    op.drop_table("quota_buckets")
    with op.batch_alter_table("whatsapp_packages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_whatsapp_packages_organization_package_id"))

    op.drop_table("whatsapp_packages")
    op.drop_table("billing_components")
    op.drop_table("refunds")
    op.drop_table("organization_packages")
    op.drop_table("waba_cycle_spend")
    op.drop_table("price_list")
    op.drop_table("payments")
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_events_pending")
        batch_op.drop_index("ix_outbox_events_company_created")

    op.drop_table("outbox_events")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_deduction")
        batch_op.drop_index("ix_ledger_entries_company_created")

    op.drop_table("ledger_entries")
    with op.batch_alter_table("deduction_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_deduction_requests_company_waba_created")
        batch_op.drop_index("ix_deduction_requests_company_created")
        batch_op.drop_index("ix_deduction_requests_company_broadcast")

    op.drop_table("deduction_requests")
    op.drop_table("companies")
