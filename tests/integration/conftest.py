"""Fixtures the HTTP tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api_support import api_client, settings_for
from tests.conftest import truncate_all
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgres"])
async def http(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    """The app over HTTP on a fresh SQLite file, then on the (emptied) PostgreSQL test database.

    The client carries the app's context (`http.context`) for what a test checks beside the API.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'api.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("postgres_url")
        database = Database(url)
        await truncate_all(database)
        await database.dispose()
    async with api_client(settings_for(url)) as (client, context):
        client.context = context  # type: ignore[attr-defined]
        yield client
