"""The money rules: allowance used this cycle, the kept cycle end, one payment per reference, one owner per WABA.

- `quota_buckets.used_minor`: the allowance is (allowance, used this cycle);
  existing pools start with `used = allowance - remaining` (what they show).
- `organization_packages.cycle_end`: the current cycle's end is kept, so new
  anchor or timezone terms take effect at it; filled from each pool's terms.
- `payments`: a payment reference is unique per company across top-up and
  settlement (was per kind).
- `whatsapp_packages.waba_id`: unique across companies (Meta's global id).

The upgrade refuses, naming the rows, when existing data breaks a new unique
key: which payment or which company's WABA is the right one is a person's call.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wabapool.domain.cycle import next_cycle_start
from wabapool.storage.types import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _refuse_duplicates(query: str, what: str) -> None:
    rows = op.get_bind().execute(sa.text(query)).all()
    if rows:
        listed = ", ".join(str(tuple(row)) for row in rows[:10])
        raise RuntimeError(f"cannot upgrade: {len(rows)} {what} ({listed}); resolve them first")


def upgrade() -> None:
    bind = op.get_bind()
    _refuse_duplicates(
        "SELECT company_id, payment_reference FROM payments GROUP BY company_id, payment_reference HAVING COUNT(*) > 1",
        "payment references used for both a top-up and a settlement",
    )
    _refuse_duplicates(
        "SELECT waba_id, COUNT(DISTINCT company_id) FROM whatsapp_packages GROUP BY waba_id "
        "HAVING COUNT(DISTINCT company_id) > 1",
        "WABA ids claimed by more than one company",
    )
    with op.batch_alter_table("quota_buckets") as batch_op:
        batch_op.add_column(sa.Column("used_minor", sa.BigInteger(), nullable=False, server_default="0"))
    bind.execute(
        sa.text(
            "UPDATE quota_buckets SET used_minor = CASE WHEN limit_minor > balance_minor "
            "THEN limit_minor - balance_minor ELSE 0 END WHERE quota_type = 'initial'"
        )
    )
    with op.batch_alter_table("organization_packages") as batch_op:
        batch_op.add_column(sa.Column("cycle_end", UTCDateTime(), nullable=True))
    packages = sa.table(
        "organization_packages",
        sa.column("id", sa.BigInteger()),
        sa.column("cycle_end", UTCDateTime()),
    )
    rows = bind.execute(
        sa.text(
            "SELECT p.id, p.cycle_start, p.cycle_anchor_day, c.timezone FROM organization_packages p "
            "JOIN companies c ON c.company_id = p.company_id"
        ).columns(
            sa.column("id"),
            sa.column("cycle_start", UTCDateTime()),
            sa.column("cycle_anchor_day"),
            sa.column("timezone"),
        )
    ).all()
    for row in rows:
        end = next_cycle_start(row.cycle_start, anchor_day=row.cycle_anchor_day, timezone=row.timezone)
        bind.execute(packages.update().where(packages.c.id == row.id).values(cycle_end=end))
    with op.batch_alter_table("organization_packages") as batch_op:
        batch_op.alter_column("cycle_end", existing_type=UTCDateTime(), nullable=False)
    with op.batch_alter_table("payments") as batch_op:
        batch_op.drop_constraint("uq_payments_company_kind_reference", type_="unique")
        batch_op.create_unique_constraint("uq_payments_company_reference", ["company_id", "payment_reference"])
    with op.batch_alter_table("whatsapp_packages") as batch_op:
        batch_op.create_unique_constraint("uq_whatsapp_packages_waba_id", ["waba_id"])


def downgrade() -> None:
    with op.batch_alter_table("whatsapp_packages") as batch_op:
        batch_op.drop_constraint("uq_whatsapp_packages_waba_id", type_="unique")
    with op.batch_alter_table("payments") as batch_op:
        batch_op.drop_constraint("uq_payments_company_reference", type_="unique")
        batch_op.create_unique_constraint(
            "uq_payments_company_kind_reference", ["company_id", "kind", "payment_reference"]
        )
    with op.batch_alter_table("organization_packages") as batch_op:
        batch_op.drop_column("cycle_end")
    with op.batch_alter_table("quota_buckets") as batch_op:
        batch_op.drop_column("used_minor")
