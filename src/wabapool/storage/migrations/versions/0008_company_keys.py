"""Keys a Citus cluster can distribute by company: `company_id` in every key of a company's tables.

Citus places each company's rows on one shard when a table is distributed by
`company_id`, and then insists that every primary key, unique key and foreign
key of the table includes `company_id` (a shard can only check its own rows).
This revision makes the schema meet that rule (the list of distributed and
reference tables is `storage/distribution.py`; docs/scale-out.md has the
cluster's calls):

- primary keys become `(company_id, id)` (quota buckets: `(company_id,
  billing_component_id, quota_type)`); `billing_components` and
  `quota_buckets` gain the `company_id` column, filled from their parents;
- foreign keys between a company's tables reference `(company_id, id)`;
- unique keys gain `company_id`: the outbox's event id and dedup key, a
  refund's deduction, a cycle statement's package and cycle, a component's
  package and code, an open package's WABA;
- `whatsapp_packages.UNIQUE (waba_id)` (a WABA id is Meta's global id, owned by
  one company) moves to `waba_owners (waba_id PRIMARY KEY, company_id)`, a
  table of its own that Citus distributes by `waba_id`: provisioning claims
  the id there in the same transaction that adds the WABA.

SQLite (the embedded default) is never distributed and auto-increments only an
`INTEGER PRIMARY KEY`: there `id` stays the primary key (the rowid), and a
unique index `rowid_key_<table> (company_id, id)` is what the composite
foreign keys point at. Every row is kept; the downgrade restores the old keys
(it cannot fail on data: one company owns each WABA id, and dedup keys and
event ids were unique across companies before).

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wabapool.storage.types import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tables whose primary key was `id` alone and becomes (company_id, id).
ID_KEYED = (
    "organization_packages",
    "billing_components",
    "whatsapp_packages",
    "deduction_requests",
    "refunds",
    "payments",
    "ledger_entries",
    "outbox_events",
    "cycle_statements",
)
# Parents that composite foreign keys reference: on SQLite they need a unique (company_id, id) of their own.
REFERENCED = ("organization_packages", "billing_components", "deduction_requests")
_OPEN_WABA_PACKAGE = "waba_id IS NOT NULL AND closed_at IS NULL"

# (table, name, columns, referred table, referred columns) before and after.
_OLD_FOREIGN_KEYS = (
    ("billing_components", "fk_billing_components_organization_package_id", ["organization_package_id"],
     "organization_packages", ["id"]),
    ("quota_buckets", "fk_quota_buckets_billing_component_id", ["billing_component_id"], "billing_components", ["id"]),
    ("whatsapp_packages", "fk_whatsapp_packages_organization_package_id", ["organization_package_id"],
     "organization_packages", ["id"]),
    ("refunds", "fk_refunds_deduction_request_id", ["deduction_request_id"], "deduction_requests", ["id"]),
)  # fmt: skip
_NEW_FOREIGN_KEYS = (
    ("billing_components", "fk_billing_components_package", ["company_id", "organization_package_id"],
     "organization_packages", ["company_id", "id"]),
    ("quota_buckets", "fk_quota_buckets_component", ["company_id", "billing_component_id"],
     "billing_components", ["company_id", "id"]),
    ("whatsapp_packages", "fk_whatsapp_packages_package", ["company_id", "organization_package_id"],
     "organization_packages", ["company_id", "id"]),
    ("refunds", "fk_refunds_deduction", ["company_id", "deduction_request_id"],
     "deduction_requests", ["company_id", "id"]),
)  # fmt: skip
# (table, old name, old columns, new name, new columns)
_UNIQUES = (
    ("billing_components", "uq_billing_components_package_code", ["organization_package_id", "component_code"],
     "uq_billing_components_company_package_code", ["company_id", "organization_package_id", "component_code"]),
    ("refunds", "uq_refunds_deduction_request_id", ["deduction_request_id"],
     "uq_refunds_company_deduction", ["company_id", "deduction_request_id"]),
    ("outbox_events", "uq_outbox_events_event_id", ["event_id"],
     "uq_outbox_events_event_company", ["event_id", "company_id"]),
    ("outbox_events", "uq_outbox_events_type_dedup", ["event_type", "dedup_key"],
     "uq_outbox_events_company_type_dedup", ["company_id", "event_type", "dedup_key"]),
    ("cycle_statements", "uq_cycle_statements_package_cycle", ["organization_package_id", "cycle_start"],
     "uq_cycle_statements_company_package_cycle", ["company_id", "organization_package_id", "cycle_start"]),
)  # fmt: skip


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    sqlite = _sqlite()
    if not sqlite:
        for table, name, *_ in _OLD_FOREIGN_KEYS:
            op.drop_constraint(name, table, type_="foreignkey")
    _add_company_column("billing_components", "organization_packages", "organization_package_id")
    _add_company_column("quota_buckets", "billing_components", "billing_component_id")
    if sqlite:
        for table in REFERENCED:
            op.create_index(f"rowid_key_{table}", table, ["company_id", "id"], unique=True)
    for table in ID_KEYED:
        with op.batch_alter_table(table) as batch:
            if not sqlite:
                batch.drop_constraint(f"pk_{table}", type_="primary")
                batch.create_primary_key(f"pk_{table}", ["company_id", "id"])
            if table == "organization_packages":
                batch.drop_index("ix_organization_packages_company_id")
            if table == "whatsapp_packages":
                batch.drop_constraint("uq_whatsapp_packages_waba_id", type_="unique")
                batch.drop_index("ix_whatsapp_packages_organization_package_id")
                batch.create_index("ix_whatsapp_packages_company_package", ["company_id", "organization_package_id"])
            for unique_table, old, _old_columns, new, new_columns in _UNIQUES:
                if unique_table == table:
                    batch.drop_constraint(old, type_="unique")
                    batch.create_unique_constraint(new, new_columns)
            for fk_table, name, columns, referred, referred_columns in _NEW_FOREIGN_KEYS:
                if fk_table == table:
                    if sqlite:
                        batch.drop_constraint(_old_foreign_key(table), type_="foreignkey")
                    batch.create_foreign_key(name, referred, columns, referred_columns)
    with op.batch_alter_table("quota_buckets") as batch:
        batch.drop_constraint("pk_quota_buckets", type_="primary")
        batch.create_primary_key("pk_quota_buckets", ["company_id", "billing_component_id", "quota_type"])
        for fk_table, name, columns, referred, referred_columns in _NEW_FOREIGN_KEYS:
            if fk_table == "quota_buckets":
                if sqlite:
                    batch.drop_constraint(_old_foreign_key("quota_buckets"), type_="foreignkey")
                batch.create_foreign_key(name, referred, columns, referred_columns)
    op.drop_index("uq_organization_packages_open_waba", table_name="organization_packages")
    op.create_index(
        "uq_organization_packages_open_waba",
        "organization_packages",
        ["company_id", "waba_id"],
        unique=True,
        postgresql_where=sa.text(_OPEN_WABA_PACKAGE),
        sqlite_where=sa.text(_OPEN_WABA_PACKAGE),
    )
    op.create_table(
        "waba_owners",
        sa.Column("waba_id", sa.String(length=32), nullable=False),
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("waba_id", name="pk_waba_owners"),
    )
    op.execute(
        "INSERT INTO waba_owners (waba_id, company_id, claimed_at) "
        "SELECT waba_id, company_id, created_at FROM whatsapp_packages"
    )


def _old_foreign_key(table: str) -> str:
    return next(name for fk_table, name, *_ in _OLD_FOREIGN_KEYS if fk_table == table)


def _add_company_column(table: str, parent: str, parent_column: str) -> None:
    """`company_id` on a child table, filled from its parent, then required."""
    with op.batch_alter_table(table) as batch:
        batch.add_column(sa.Column("company_id", sa.BigInteger(), nullable=True))
    op.execute(
        f"UPDATE {table} SET company_id = (SELECT {parent}.company_id FROM {parent} "
        f"WHERE {parent}.id = {table}.{parent_column})"
    )
    with op.batch_alter_table(table) as batch:
        batch.alter_column("company_id", existing_type=sa.BigInteger(), nullable=False)


def downgrade() -> None:
    sqlite = _sqlite()
    op.drop_table("waba_owners")
    op.drop_index("uq_organization_packages_open_waba", table_name="organization_packages")
    op.create_index(
        "uq_organization_packages_open_waba",
        "organization_packages",
        ["waba_id"],
        unique=True,
        postgresql_where=sa.text(_OPEN_WABA_PACKAGE),
        sqlite_where=sa.text(_OPEN_WABA_PACKAGE),
    )
    if not sqlite:
        for table, name, *_ in _NEW_FOREIGN_KEYS:
            op.drop_constraint(name, table, type_="foreignkey")
    with op.batch_alter_table("quota_buckets") as batch:
        if sqlite:
            batch.drop_constraint("fk_quota_buckets_component", type_="foreignkey")
        batch.drop_constraint("pk_quota_buckets", type_="primary")
        batch.create_primary_key("pk_quota_buckets", ["billing_component_id", "quota_type"])
    for table in reversed(ID_KEYED):
        with op.batch_alter_table(table) as batch:
            for fk_table, name, *_ in _NEW_FOREIGN_KEYS:
                if fk_table == table and sqlite:
                    batch.drop_constraint(name, type_="foreignkey")
            for unique_table, old, old_columns, new, _new_columns in _UNIQUES:
                if unique_table == table:
                    batch.drop_constraint(new, type_="unique")
                    batch.create_unique_constraint(old, old_columns)
            if table == "whatsapp_packages":
                batch.drop_index("ix_whatsapp_packages_company_package")
                batch.create_index("ix_whatsapp_packages_organization_package_id", ["organization_package_id"])
                batch.create_unique_constraint("uq_whatsapp_packages_waba_id", ["waba_id"])
            if table == "organization_packages":
                batch.create_index("ix_organization_packages_company_id", ["company_id"])
            if not sqlite:
                batch.drop_constraint(f"pk_{table}", type_="primary")
                batch.create_primary_key(f"pk_{table}", ["id"])
    if sqlite:
        for table in REFERENCED:
            op.drop_index(f"rowid_key_{table}", table_name=table)
    for table in ("quota_buckets", "billing_components"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("company_id")
    for table, name, columns, referred, referred_columns in _OLD_FOREIGN_KEYS:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(name, referred, columns, referred_columns)
