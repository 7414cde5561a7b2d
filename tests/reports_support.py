"""A real app on SQLite or PostgreSQL with a hand-moved clock, for the report tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx

from tests.api_support import INTERNAL, INTERNAL_HEADERS, api_client, deduction_body, provision, settings_for
from tests.conftest import FakeClock, truncate_all
from wabapool.api.context import AppContext
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade


@asynccontextmanager
async def report_app(
    url: str, clock: FakeClock, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, AppContext]]:
    """An app on an empty, migrated database whose service and reports read `clock`."""
    if url.startswith("sqlite"):
        upgrade(url)
    else:
        database = Database(url)
        await truncate_all(database)
        await database.dispose()
    async with api_client(settings_for(url, **overrides)) as (client, context):
        context.service.clock = clock
        context.reports.clock = clock
        yield client, context


def database_url(kind: str, tmp_path: Any, postgres_url: str | None) -> str:
    return f"sqlite:///{tmp_path / 'reports.db'}" if kind == "sqlite" else str(postgres_url)


async def deduct(client: httpx.AsyncClient, company_id: int, code: str, **fields: Any) -> dict[str, Any]:
    response = await client.post(
        f"{INTERNAL}/quota-managements/deduction",
        json=deduction_body(company_id, code, **fields),
        headers=INTERNAL_HEADERS,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def refund(client: httpx.AsyncClient, company_id: int, code: str, refund_code: str) -> dict[str, Any]:
    response = await client.post(
        f"{INTERNAL}/quota-managements/refund",
        json={"company_id": company_id, "unique_code": code, "refund_code": refund_code, "reason": "failed"},
        headers=INTERNAL_HEADERS,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def top_up(client: httpx.AsyncClient, company_id: int, amount: int, reference: str) -> None:
    response = await client.post(
        f"{INTERNAL}/quota-managements/top-up",
        json={"company_id": company_id, "amount": amount, "payment_reference": reference},
        headers=INTERNAL_HEADERS,
    )
    assert response.status_code == 200, response.text


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


__all__ = ["at", "database_url", "deduct", "provision", "refund", "report_app", "top_up"]
