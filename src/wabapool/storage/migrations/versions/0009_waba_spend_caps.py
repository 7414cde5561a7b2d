"""Spending caps per WABA (rule 3.11): the caps, their audit, and the capped part of each WABA's cycle spend.

Every table carries `company_id` in its primary key and foreign keys (the
schema is distributable by company). The capped spend is a column of
`waba_cycle_spend`, the row the deduction already upserts, so keeping it
costs the hot path no statement of its own; existing rows start at 0, which
is right because no cap exists before this revision.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("waba_cycle_spend") as batch:
        batch.add_column(sa.Column("capped_spent_minor", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "waba_spend_caps",
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("waba_id", sa.String(length=32), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=True),
        sa.Column("warn_percent", sa.SmallInteger(), nullable=False),
        sa.Column("warned_cycle_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reached_cycle_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id", "waba_id"],
            ["whatsapp_packages.company_id", "whatsapp_packages.waba_id"],
            name="fk_waba_spend_caps_waba",
        ),
        sa.PrimaryKeyConstraint("company_id", "waba_id", name="pk_waba_spend_caps"),
    )
    op.create_table(
        "waba_spend_cap_changes",
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("change_id", sa.String(length=36), nullable=False),
        sa.Column("waba_id", sa.String(length=32), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.Column("old_cap", sa.JSON(), nullable=True),
        sa.Column("new_cap", sa.JSON(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id", "waba_id"],
            ["whatsapp_packages.company_id", "whatsapp_packages.waba_id"],
            name="fk_waba_spend_cap_changes_waba",
        ),
        sa.PrimaryKeyConstraint("company_id", "change_id", name="pk_waba_spend_cap_changes"),
    )
    op.create_index(
        "ix_waba_spend_cap_changes_company_waba", "waba_spend_cap_changes", ["company_id", "waba_id", "changed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_waba_spend_cap_changes_company_waba", table_name="waba_spend_cap_changes")
    op.drop_table("waba_spend_cap_changes")
    op.drop_table("waba_spend_caps")
    with op.batch_alter_table("waba_cycle_spend") as batch:
        batch.drop_column("capped_spent_minor")
