"""What a deduction's lock statement reads instead of two more round trips: the price list's version, the cap flag.

- `price_list_versions`: one row, raised by every price change in its own
  transaction. Deductions price messages from a per-process price book
  (`service.price_books`); the group's lock statement (`storage.group_lock`)
  reads this version beside the packages, and a book at another version is
  read again. A reader that sees the new version also sees the new prices.
- `organization_packages.spend_caps`: true once a WABA charging the package
  has (or had) a spending cap. It is set under the package's lock by the cap
  change, and by whatever points a WABA at another package; read with the
  package under its lock, it tells the group whether to read caps at all (a
  stale true costs one read; it is never false while a cap applies).
Reversible.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "price_list_versions",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_list_versions")),
    )
    op.bulk_insert(table, [{"id": 1, "version": 1}])
    with op.batch_alter_table("organization_packages") as batch:
        batch.add_column(sa.Column("spend_caps", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(
        "UPDATE organization_packages SET spend_caps = true WHERE EXISTS ("
        " SELECT 1 FROM whatsapp_packages w JOIN waba_spend_caps c"
        " ON c.company_id = w.company_id AND c.waba_id = w.waba_id"
        " WHERE w.company_id = organization_packages.company_id"
        " AND w.organization_package_id = organization_packages.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("organization_packages") as batch:
        batch.drop_column("spend_caps")
    op.drop_table("price_list_versions")
