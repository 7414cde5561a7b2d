"""The migrated schema is what `storage/tables/` says, on SQLite and on PostgreSQL (Alembic's own comparison)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade
from wabapool.storage.tables import metadata


def _ours(name: str | None, type_: str, parent_names: Any) -> bool:
    """Only the product's tables: the test database also holds the benchmark's own.

    SQLite's `rowid_key_<table>` indexes are left out: there `id` stays the rowid primary key (the only
    column SQLite auto-increments) and these `(company_id, id)` keys are what its composite foreign keys
    point at; PostgreSQL's primary key is `(company_id, id)` itself (migration 0008).
    """
    if type_ == "index" and name is not None and name.startswith("rowid_key_"):
        return False
    return type_ != "table" or name in metadata.tables


def _differences(connection: Any) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": False, "include_name": _ours}
    )
    return list(compare_metadata(context, metadata))


async def test_the_migrated_schema_has_no_difference_from_the_tables(database: Database) -> None:
    if database.is_sqlite:
        upgrade(str(database.engine.url))
    async with database.engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    assert differences == []
