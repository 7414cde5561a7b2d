"""Alembic environment: runs migrations over the async engine of either database."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from wabapool.storage.database import TRANSACTION_POOLING, async_url, pooling_of
from wabapool.storage.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    url = config.get_main_option("sqlalchemy.url") or ""
    # Behind PgBouncer in transaction pooling no prepared statement may be reused (storage.database).
    options = (
        {"connect_args": {"statement_cache_size": 0, "prepared_statement_cache_size": 0}}
        if not url.startswith("sqlite") and pooling_of(url) == TRANSACTION_POOLING
        else {}
    )
    engine = create_async_engine(async_url(url), **options)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
