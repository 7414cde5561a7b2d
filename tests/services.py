"""Where the test suite finds PostgreSQL and Redis; under CI=true a missing service fails, never skips."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket

import pytest

POSTGRES_ADMIN_URL = os.environ.get("WABAPOOL_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
POSTGRES_TEST_DATABASE = os.environ.get("WABAPOOL_TEST_POSTGRES_DB", "wabapool_test")
POSTGRES_URL = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + POSTGRES_TEST_DATABASE
REDIS_URL = os.environ.get("WABAPOOL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(host: str, port: int, name: str) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(f"{message}; start it to run this test")


def require_postgres() -> str:
    require("127.0.0.1", 5432, "PostgreSQL")
    return POSTGRES_URL


def require_redis() -> str:
    require("127.0.0.1", 6379, "Redis")
    return REDIS_URL


_fresh_in_this_process = False


async def ensure_postgres_database() -> None:
    """The test database, created afresh once per test run.

    A database left by an earlier run may sit at a revision whose migration
    has changed since (a branch's migration edited before it landed): the
    upgrade would then see nothing to do and the schema would be stale.
    """
    global _fresh_in_this_process
    import asyncpg

    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        if not _fresh_in_this_process:
            await admin.execute(f'DROP DATABASE IF EXISTS "{POSTGRES_TEST_DATABASE}" WITH (FORCE)')
            _fresh_in_this_process = True
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", POSTGRES_TEST_DATABASE)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{POSTGRES_TEST_DATABASE}"')
    finally:
        await admin.close()


def prepare_postgres() -> str:
    """A migrated, empty test database; returns its URL."""
    url = require_postgres()
    # Fixtures may be set up inside the test's event loop: give asyncio.run a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, ensure_postgres_database()).result()
    from wabapool.storage.migrate import upgrade

    upgrade(url)
    return url
