"""The client SDK against the real app (in-process over ASGI): results and typed exceptions."""

from __future__ import annotations

import httpx
import pytest

from tests.api_support import API_KEY, settings_for
from wabapool import bootstrap
from wabapool.client import (
    AsyncWabapoolClient,
    IdempotencyConflict,
    NotFound,
    PackageTerms,
    QuotaExceeded,
    Unauthorized,
)
from wabapool.storage.migrate import upgrade


async def test_the_async_client_deducts_replays_and_raises_typed_errors(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'sdk.db'}"
    upgrade(url)
    settings = settings_for(url)
    context = bootstrap.app_context(settings)
    transport = httpx.ASGITransport(app=bootstrap.create_app(settings, context=context))
    try:
        async with AsyncWabapoolClient("http://wabapool.test", API_KEY, transport=transport) as client:
            await client.put_company(42, package=PackageTerms(allowance=1_000, postpaid_limit=500))
            await client.put_waba(42, "1234567890", "Sales")
            await client.put_price("wa_marketing_id", 600, company_id=42)
            first = await client.deduct(42, "wa", "wa_marketing_id", "wamid.1", 2, "1234567890")
            assert (first.amount, first.value_before, first.value_after) == (1_200, 1_000, -200)
            assert [(a.quota_type, a.amount) for a in first.allocations] == [("initial", 1_000), ("postpaid", 200)]
            again = await client.deduct(42, "wa", "wa_marketing_id", "wamid.1", 2, "1234567890")
            assert again.replayed and again.deduction_id == first.deduction_id
            with pytest.raises(IdempotencyConflict):
                await client.deduct(42, "wa", "wa_marketing_id", "wamid.1", 1, "1234567890")
            with pytest.raises(QuotaExceeded):
                await client.deduct(42, "wa", "wa_marketing_id", "wamid.2", 1, "1234567890")
            with pytest.raises(NotFound):
                await client.deduct(42, "wa", "wa_marketing_id", "wamid.3", 1, "999")
            payment = await client.top_up(42, 5_000, "pay-1")
            assert payment.value_after == 4_800
            balance = await client.balance(42)
            assert (balance.total, balance.postpaid_used, balance.additional_remaining) == (4_800, 0, 4_800)
        async with AsyncWabapoolClient("http://wabapool.test", "not-the-key-0123456789", transport=transport) as bad:
            with pytest.raises(Unauthorized):
                await bad.balance(42)
    finally:
        await context.service.database.dispose()
