"""Building a real app (SQLite or PostgreSQL) and clients for it in tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.conftest import TEST_PII_KEYS
from wabapool import bootstrap
from wabapool.api.context import AppContext
from wabapool.config import Settings
from wabapool.security import issue_token

API_KEY = "pipeline-key-0123456789abcdef"
PAYMENT_KEY = "payments-key-0123456789abcdef"
JWT_SECRET = "test-secret-with-enough-entropy-0123456789"
INTERNAL = "/iag/v1"
PUBLIC = "/api/core/v1"


def settings_for(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "api_keys": f"pipeline:{API_KEY},payments:{PAYMENT_KEY}",
        "jwt_secret": JWT_SECRET,
        "pii_keys": TEST_PII_KEYS,
        # Tests call the public API faster than any page does: the rate limits have their own tests.
        "rate_company_per_second": 1e6,
        "rate_company_burst": 10**6,
        "rate_token_per_second": 1e6,
        "rate_token_burst": 10**6,
    }
    values.update(overrides)
    return Settings(**values)


def bearer(company_id: int, role: str = "owner", **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(company_id=company_id, role=role, secret=JWT_SECRET, **kwargs)}"}


INTERNAL_HEADERS = {"X-Api-Key": API_KEY}


@asynccontextmanager
async def api_client(settings: Settings, **context_options: Any) -> AsyncIterator[tuple[httpx.AsyncClient, AppContext]]:
    context = bootstrap.app_context(settings, **context_options)
    app = bootstrap.create_app(settings, context=context)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wabapool.test") as client:
        try:
            yield client, context
        finally:
            await context.service.database.dispose()


async def provision(
    client: httpx.AsyncClient,
    company_id: int,
    *,
    wabas: tuple[str, ...] = ("1001001",),
    allowance: int = 100_000,
    postpaid_limit: int = 50_000,
    unit_price: int = 1_000,
) -> None:
    """A v3 company with WABAs and a company price for wa_marketing_id, over the real internal API."""
    response = await client.put(
        f"{INTERNAL}/companies/{company_id}",
        json={
            "billing_version": "v3",
            "currency": "IDR",
            "timezone": "Asia/Jakarta",
            "package": {
                "allowance": allowance,
                "postpaid_limit": postpaid_limit,
                "cycle_anchor_day": 1,
                "threshold_percent": None,
            },
        },
        headers=INTERNAL_HEADERS,
    )
    assert response.status_code == 200, response.text
    for index, waba_id in enumerate(wabas):
        response = await client.put(
            f"{INTERNAL}/companies/{company_id}/wabas/{waba_id}",
            json={"name": f"WABA {index + 1}"},
            headers=INTERNAL_HEADERS,
        )
        assert response.status_code == 200, response.text
    response = await client.put(
        f"{INTERNAL}/price-list/wa_marketing_id",
        json={"unit_price": unit_price, "company_id": company_id, "effective_from": "2025-07-01T00:00:00Z"},
        headers=INTERNAL_HEADERS,
    )
    assert response.status_code == 200, response.text


def deduction_body(
    company_id: int, unique_code: str, *, waba_id: str = "1001001", quantity: int = 1, **extra: Any
) -> dict[str, Any]:
    return {
        "company_id": company_id,
        "billing_code": "whatsapp",
        "deduction_code": "wa_marketing_id",
        "unique_code": unique_code,
        "quantity": quantity,
        "extra_attrs": {"waba_id": waba_id, **extra},
    }
