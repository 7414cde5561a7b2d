"""Worker delivery state: dead letters, skips, claims, a disabled webhook, cycle statements, NOTIFY.

An outbox event is pending until exactly one of `delivered_at`, `dead_at`,
`skipped_at` is set. A worker claims a company's oldest pending event (the
head) for a lease (`claimed_until`, `claim_token`); a worker that dies
leaves the lease to expire and another one sends the event again, same id.
On PostgreSQL an insert into the outbox NOTIFYs `wabapool_outbox` so idle
workers wake before their next poll.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = "delivered_at IS NULL AND dead_at IS NULL AND skipped_at IS NULL"
NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION wabapool_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('wabapool_outbox', '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER outbox_events_notify AFTER INSERT ON outbox_events
FOR EACH STATEMENT EXECUTE FUNCTION wabapool_outbox_notify()
"""


def upgrade() -> None:
    with op.batch_alter_table("companies") as batch_op:
        batch_op.add_column(sa.Column("webhook_disabled_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("outbox_events") as batch_op:
        batch_op.add_column(sa.Column("last_status", sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("skipped_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("claim_token", sa.String(length=36), nullable=True))
    op.create_index(
        "ix_outbox_events_company_pending",
        "outbox_events",
        ["company_id", "id"],
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
    )
    op.create_table(
        "cycle_statements",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("organization_package_id", sa.BigInteger(), nullable=False),
        sa.Column("cycle_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cycle_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("allowance_minor", sa.BigInteger(), nullable=False),
        sa.Column("postpaid_limit_minor", sa.BigInteger(), nullable=False),
        sa.Column("opening_initial_minor", sa.BigInteger(), nullable=False),
        sa.Column("opening_additional_minor", sa.BigInteger(), nullable=False),
        sa.Column("opening_postpaid_used_minor", sa.BigInteger(), nullable=False),
        sa.Column("closing_initial_minor", sa.BigInteger(), nullable=False),
        sa.Column("closing_additional_minor", sa.BigInteger(), nullable=False),
        sa.Column("closing_postpaid_used_minor", sa.BigInteger(), nullable=False),
        sa.Column("spent_minor", sa.BigInteger(), nullable=False),
        sa.Column("spent_by_waba", sa.JSON(), nullable=False),
        sa.Column("deductions_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cycle_statements"),
        sa.UniqueConstraint("company_id", "cycle_start", name="uq_cycle_statements_company_cycle"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outbox_events_notify ON outbox_events")
        op.execute("DROP FUNCTION IF EXISTS wabapool_outbox_notify()")
    op.drop_table("cycle_statements")
    op.drop_index("ix_outbox_events_company_pending", table_name="outbox_events")
    with op.batch_alter_table("outbox_events") as batch_op:
        for name in ("claim_token", "claimed_until", "skipped_at", "dead_at", "last_status"):
            batch_op.drop_column(name)
    with op.batch_alter_table("companies") as batch_op:
        batch_op.drop_column("webhook_disabled_at")
