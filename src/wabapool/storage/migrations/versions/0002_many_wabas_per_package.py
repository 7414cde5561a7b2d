"""The RFC's index change: many WABAs share one organization package (the shared pool).

`whatsapp_packages.organization_package_id` goes from a unique index (one
package per WABA) to a plain one. The rollback refuses while any package has
more than one WABA: making the index unique again would fail half way, or
worse, force a choice of which WABA loses its pool.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_whatsapp_packages_organization_package_id"


def upgrade() -> None:
    with op.batch_alter_table("whatsapp_packages") as batch_op:
        batch_op.drop_index(INDEX)
        batch_op.create_index(INDEX, ["organization_package_id"], unique=False)


def downgrade() -> None:
    shared = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT company_id, organization_package_id, COUNT(*) AS wabas FROM whatsapp_packages "
                "WHERE organization_package_id IS NOT NULL GROUP BY company_id, organization_package_id "
                "HAVING COUNT(*) > 1 ORDER BY company_id"
            )
        )
        .all()
    )
    if shared:
        listed = ", ".join(
            f"company {row.company_id} (package {row.organization_package_id}, {row.wabas} WABAs)"
            for row in shared[:20]
        )
        more = f" and {len(shared) - 20} more" if len(shared) > 20 else ""
        raise RuntimeError(
            f"cannot roll back: {len(shared)} package(s) are shared by more than one WABA: {listed}{more}; "
            "move those companies back to one package per WABA first (wabapool backfill --rollback)"
        )
    with op.batch_alter_table("whatsapp_packages") as batch_op:
        batch_op.drop_index(INDEX)
        batch_op.create_index(INDEX, ["organization_package_id"], unique=True)
