"""The bench database: created when missing (PostgreSQL), migrated, with the baseline's tables."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bench import baseline
from bench.workload import COMPANY_ID_BASE, COMPANY_ID_RANGE
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade
from wabapool.storage.tables import companies

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/wabapool_bench"
# Where CREATE DATABASE is issued from: the server's `test` database, else `postgres`.
ADMIN_DATABASES = ("test", "postgres")


def default_database_url() -> str:
    return os.environ.get("WABAPOOL_DATABASE_URL") or DEFAULT_DATABASE_URL


def shown_url(url: str) -> str:
    """The URL with any password hidden, for output and JSON."""
    return make_url(url).render_as_string(hide_password=True)


async def ensure_postgres_database(url: str) -> None:
    """CREATE DATABASE for the URL's database unless it exists (asyncpg, from the admin database)."""
    import asyncpg

    parsed = make_url(url)
    name = parsed.database
    if not name:
        raise ValueError(f"no database name in {shown_url(url)}")
    last_error: Exception | None = None
    for admin_name in ADMIN_DATABASES:
        admin_url = parsed.set(drivername="postgresql", database=admin_name).render_as_string(hide_password=False)
        try:
            admin = await asyncpg.connect(admin_url)
        except (OSError, asyncpg.PostgresError) as error:
            last_error = error
            continue
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                quoted = name.replace('"', '""')
                await admin.execute(f'CREATE DATABASE "{quoted}"')
        finally:
            await admin.close()
        return
    raise RuntimeError(f"cannot reach PostgreSQL at {shown_url(url)} to create {name!r}") from last_error


def git_state() -> tuple[str | None, list[str]]:
    """HEAD of the checkout the bench runs from, and its uncommitted changes to src/ (what is measured)."""
    root = Path(__file__).resolve().parent.parent

    def git(*arguments: str) -> str:
        try:
            completed = subprocess.run(["git", *arguments], cwd=root, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return completed.stdout if completed.returncode == 0 else ""

    revision = git("rev-parse", "HEAD").strip() or None
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines() if line[:2] != "??"]
    return revision, dirty


async def free_connections(url: str) -> int | None:
    """PostgreSQL's max_connections less the connections open now (None on SQLite or when unknown)."""
    if not make_url(url).drivername.startswith("postgres"):
        return None
    database = Database(url)
    try:
        async with database.read() as connection:
            limit = int((await connection.exec_driver_sql("SHOW max_connections")).scalar_one())
            in_use = (await connection.exec_driver_sql("SELECT count(*) FROM pg_stat_activity")).scalar_one()
    except (OSError, SQLAlchemyError):
        return None  # not there yet: prepare() creates it, or says why it cannot
    finally:
        await database.dispose()
    return limit - int(in_use)


class ForeignDataError(RuntimeError):
    """The database holds companies the bench did not create; it would empty their tables."""


async def refuse_foreign_data(database: Database, url: str) -> None:
    """Every cell empties wabapool's tables: never in a database that holds anyone else's companies."""
    own = companies.c.company_id.between(COMPANY_ID_BASE, COMPANY_ID_BASE + COMPANY_ID_RANGE - 1)
    async with database.read() as connection:
        foreign = (await connection.execute(select(func.count()).select_from(companies).where(~own))).scalar_one()
    if foreign:
        raise ForeignDataError(
            f"{shown_url(url)} holds {foreign} companies the bench did not create, and every cell empties "
            f"wabapool's tables: point --database-url at a database of its own (default {DEFAULT_DATABASE_URL})"
        )


async def prepare(url: str) -> None:
    """Ready to run: the database exists, wabapool's schema is at head, the baseline's tables exist."""
    parsed = make_url(url)
    if parsed.drivername.startswith("postgres"):
        await ensure_postgres_database(url)
    elif parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    upgrade(url)
    database = Database(url)
    try:
        await refuse_foreign_data(database, url)
        await baseline.create_tables(database)
    finally:
        await database.dispose()
