"""The one MetaData every table registers in, its naming convention, and the key every company table shares."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint

from wabapool.storage.types import BigId

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def company_key() -> PrimaryKeyConstraint:
    """(company_id, id): `id` is drawn from the table's sequence (SQLite: the rowid)."""
    return PrimaryKeyConstraint("company_id", "id")


def id_column() -> Column[int]:
    """The `id` column: drawn from the table's sequence (SQLite: the rowid)."""
    return Column("id", BigId, autoincrement=True, nullable=False)
