"""v2 served: a company may hold one package per WABA beside (or instead of) its shared pool.

- `organization_packages.waba_id`: the WABA a package of its own belongs to
  (v2, or a v3 WABA added with `waba_save_organization_id` off); NULL for the
  company's shared pool. `closed_at`: set when `wabapool backfill` moves a
  package into the pool (or the rollback closes the pool); a closed package is
  kept, never charged.
- The company's unique index on packages becomes two partial ones: one open
  shared pool per company, one open package per WABA.
- `companies.waba_save_organization_id`: the company's override of the
  feature flag (NULL: the global default); `waba_package_terms`: a v2
  company's terms for each new WABA's own package.
- `cycle_statements`: one statement per package and cycle (was per company).

The rollback refuses, naming the companies, while a company has more than one
package: the old unique index would fail half way, or force a choice of which
package's money disappears. Move them back with `wabapool backfill --rollback`
(or back to one pool) first.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wabapool.storage.types import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN_POOL = "waba_id IS NULL AND closed_at IS NULL"
_OPEN_WABA_PACKAGE = "waba_id IS NOT NULL AND closed_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("organization_packages") as batch_op:
        batch_op.add_column(sa.Column("waba_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("closed_at", UTCDateTime(), nullable=True))
        batch_op.drop_constraint("uq_organization_packages_company_id", type_="unique")
        batch_op.create_index("ix_organization_packages_company_id", ["company_id"])
    op.create_index(
        "uq_organization_packages_open_pool",
        "organization_packages",
        ["company_id"],
        unique=True,
        postgresql_where=sa.text(_OPEN_POOL),
        sqlite_where=sa.text(_OPEN_POOL),
    )
    op.create_index(
        "uq_organization_packages_open_waba",
        "organization_packages",
        ["waba_id"],
        unique=True,
        postgresql_where=sa.text(_OPEN_WABA_PACKAGE),
        sqlite_where=sa.text(_OPEN_WABA_PACKAGE),
    )
    with op.batch_alter_table("companies") as batch_op:
        batch_op.add_column(sa.Column("waba_save_organization_id", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("waba_package_terms", sa.JSON(), nullable=True))
    with op.batch_alter_table("cycle_statements") as batch_op:
        batch_op.drop_constraint("uq_cycle_statements_company_cycle", type_="unique")
        batch_op.create_unique_constraint(
            "uq_cycle_statements_package_cycle", ["organization_package_id", "cycle_start"]
        )


def downgrade() -> None:
    several = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT company_id, COUNT(*) AS packages FROM organization_packages "
                "GROUP BY company_id HAVING COUNT(*) > 1 ORDER BY company_id"
            )
        )
        .all()
    )
    if several:
        listed = ", ".join(f"company {row.company_id} ({row.packages} packages)" for row in several[:20])
        more = f" and {len(several) - 20} more" if len(several) > 20 else ""
        raise RuntimeError(
            f"cannot roll back: {len(several)} company(ies) hold more than one package: {listed}{more}; "
            "bring each back to one package first"
        )
    with op.batch_alter_table("cycle_statements") as batch_op:
        batch_op.drop_constraint("uq_cycle_statements_package_cycle", type_="unique")
        batch_op.create_unique_constraint("uq_cycle_statements_company_cycle", ["company_id", "cycle_start"])
    with op.batch_alter_table("companies") as batch_op:
        batch_op.drop_column("waba_package_terms")
        batch_op.drop_column("waba_save_organization_id")
    op.drop_index("uq_organization_packages_open_waba", table_name="organization_packages")
    op.drop_index("uq_organization_packages_open_pool", table_name="organization_packages")
    with op.batch_alter_table("organization_packages") as batch_op:
        batch_op.drop_index("ix_organization_packages_company_id")
        batch_op.create_unique_constraint("uq_organization_packages_company_id", ["company_id"])
        batch_op.drop_column("closed_at")
        batch_op.drop_column("waba_id")
