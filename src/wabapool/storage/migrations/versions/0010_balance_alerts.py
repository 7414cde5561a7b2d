"""The company's own balance alerts, auto-recharge requests and forecast warning (issue 25).

`companies` keeps the settings (`balance_alerts`, `auto_recharge`,
`forecast_warning_days`, NULL: none / none / 3 days); each package keeps where
it stands with them, beside `low_balance_armed`: the alerts fired in their
current crossing, the open top-up request, the requests raised this cycle.
No new table: everything is read with the package under its lock. Reversible.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN_REQUEST_SQL = "top_up_reference IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("companies") as batch:
        batch.add_column(sa.Column("balance_alerts", sa.JSON()))
        batch.add_column(sa.Column("auto_recharge", sa.JSON()))
        batch.add_column(sa.Column("forecast_warning_days", sa.SmallInteger()))
    with op.batch_alter_table("organization_packages") as batch:
        batch.add_column(sa.Column("alerts_fired", sa.JSON()))
        batch.add_column(sa.Column("top_up_reference", sa.String(128)))
        batch.add_column(sa.Column("top_up_amount_minor", sa.BigInteger()))
        batch.add_column(sa.Column("top_up_requested_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("top_ups_requested", sa.SmallInteger(), nullable=False, server_default="0"))
    op.create_index(
        "ix_organization_packages_open_top_up",
        "organization_packages",
        ["top_up_requested_at"],
        postgresql_where=sa.text(_OPEN_REQUEST_SQL),
        sqlite_where=sa.text(_OPEN_REQUEST_SQL),
    )


def downgrade() -> None:
    op.drop_index("ix_organization_packages_open_top_up", table_name="organization_packages")
    with op.batch_alter_table("organization_packages") as batch:
        for name in ("top_ups_requested", "top_up_requested_at", "top_up_amount_minor", "top_up_reference"):
            batch.drop_column(name)
        batch.drop_column("alerts_fired")
    with op.batch_alter_table("companies") as batch:
        for name in ("forecast_warning_days", "auto_recharge", "balance_alerts"):
            batch.drop_column(name)
