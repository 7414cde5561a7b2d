"""The pool's version: a counter every committed change of the pool raises by one.

It orders what the balance cache is given: a change writes its new figures
through to the cache under its version, and a read that missed fills the cache
under the version it read, so an older value (a late write-through, a fill that
began before a change) never replaces a newer one. Existing pools start at 0.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("organization_packages") as batch:
        batch.add_column(sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("organization_packages") as batch:
        batch.drop_column("version")
