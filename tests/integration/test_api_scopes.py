"""Scoped API keys (`service:key:scope+scope`): a key does on the internal API only what its scopes allow."""

from __future__ import annotations

from tests.api_support import API_KEY, INTERNAL, INTERNAL_HEADERS, api_client, deduction_body, provision, settings_for
from wabapool.storage.migrate import upgrade

SENDER_KEY = "sender-key-0123456789abcdef"


async def test_a_key_scoped_to_deduct_charges_but_may_not_top_up_or_provision(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'scopes.db'}"
    upgrade(url)
    settings = settings_for(url, api_keys=f"pipeline:{API_KEY},sender:{SENDER_KEY}:deduct+read")
    async with api_client(settings) as (client, _):
        await provision(client, 7)  # the unscoped key may do everything
        sender = {"X-Api-Key": SENDER_KEY}
        charged = await client.post(
            f"{INTERNAL}/quota-managements/deduction", json=deduction_body(7, "m1"), headers=sender
        )
        assert charged.status_code == 200, charged.text
        assert (await client.get(f"{INTERNAL}/quota-managements/7/balance", headers=sender)).status_code == 200
        top_up = await client.post(
            f"{INTERNAL}/quota-managements/top-up",
            json={"company_id": 7, "amount": 100, "payment_reference": "p1"},
            headers=sender,
        )
        assert top_up.status_code == 403
        assert top_up.json()["error"] == {
            "code": "forbidden",
            "message": "this API key may not top-up",
            "details": {"scope": "top-up"},
        }
        renamed = await client.put(f"{INTERNAL}/companies/7/wabas/1001001", json={"name": "x"}, headers=sender)
        assert renamed.status_code == 403
        assert (
            await client.post(
                f"{INTERNAL}/quota-managements/top-up",
                json={"company_id": 7, "amount": 100, "payment_reference": "p1"},
                headers=INTERNAL_HEADERS,
            )
        ).status_code == 200
