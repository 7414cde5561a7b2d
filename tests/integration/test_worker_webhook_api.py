"""PUT/DELETE …/webhook: a generated Standard Webhooks secret returned once, SSRF-checked URLs, 400 in the envelope."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.api_support import INTERNAL, INTERNAL_HEADERS, api_client, provision, settings_for
from wabapool.domain.webhooks import secret_bytes
from wabapool.service.webhooks import open_secret
from wabapool.storage.tables import companies

COMPANY = 7001


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    from wabapool.storage.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(url)
    return url


async def test_put_without_a_secret_generates_one_returns_it_once_and_stores_it_sealed(sqlite_url: str) -> None:
    async with api_client(settings_for(sqlite_url)) as (client, context):
        await provision(client, COMPANY)
        response = await client.put(
            f"{INTERNAL}/companies/{COMPANY}/webhook", json={"url": "https://1.1.1.1/hooks"}, headers=INTERNAL_HEADERS
        )
        assert response.status_code == 200, response.text
        secret = response.json()["secret"]
        assert len(secret_bytes(secret)) == 32
        async with context.service.database.read() as connection:
            row = (await connection.execute(select(companies).where(companies.c.company_id == COMPANY))).one()
        assert secret not in row.webhook_secret and open_secret(context.service.sealer, row.webhook_secret) == secret

        given = "whsec_" + "A" * 40
        again = await client.put(
            f"{INTERNAL}/companies/{COMPANY}/webhook",
            json={"url": "https://1.1.1.1/hooks", "secret": given},
            headers=INTERNAL_HEADERS,
        )
        assert again.status_code == 200 and again.json()["secret"] is None  # a secret the caller has is not echoed


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/h",
        "https://10.0.0.8/h",
        "https://192.168.0.2/h",
        "https://169.254.169.254/",
        "https://[::1]/h",
        "http://1.1.1.1/h",
    ],
)
async def test_put_refuses_urls_into_our_network_with_400_in_the_envelope(sqlite_url: str, url: str) -> None:
    async with api_client(settings_for(sqlite_url)) as (client, _):
        await provision(client, COMPANY)
        response = await client.put(
            f"{INTERNAL}/companies/{COMPANY}/webhook", json={"url": url}, headers=INTERNAL_HEADERS
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and error["details"] == {"field": "url"}


async def test_development_settings_allow_a_loopback_http_receiver(sqlite_url: str) -> None:
    async with api_client(settings_for(sqlite_url, webhook_allow_private=True)) as (client, _):
        await provision(client, COMPANY)
        response = await client.put(
            f"{INTERNAL}/companies/{COMPANY}/webhook", json={"url": "http://127.0.0.1:9/h"}, headers=INTERNAL_HEADERS
        )
        assert response.status_code == 200


async def test_a_malformed_secret_is_a_400(sqlite_url: str) -> None:
    async with api_client(settings_for(sqlite_url)) as (client, _):
        await provision(client, COMPANY)
        response = await client.put(
            f"{INTERNAL}/companies/{COMPANY}/webhook",
            json={"url": "https://1.1.1.1/h", "secret": "plain-secret-not-standard"},
            headers=INTERNAL_HEADERS,
        )
        assert response.status_code == 400 and response.json()["error"]["details"] == {"field": "secret"}


async def test_delete_removes_the_webhook_and_an_unknown_company_is_404(sqlite_url: str) -> None:
    async with api_client(settings_for(sqlite_url)) as (client, context):
        await provision(client, COMPANY)
        await client.put(
            f"{INTERNAL}/companies/{COMPANY}/webhook", json={"url": "https://1.1.1.1/h"}, headers=INTERNAL_HEADERS
        )
        assert (
            await client.delete(f"{INTERNAL}/companies/{COMPANY}/webhook", headers=INTERNAL_HEADERS)
        ).status_code == 204
        async with context.service.database.read() as connection:
            row = (await connection.execute(select(companies).where(companies.c.company_id == COMPANY))).one()
        assert row.webhook_url is None and row.webhook_secret is None
        assert (await client.delete(f"{INTERNAL}/companies/999/webhook", headers=INTERNAL_HEADERS)).status_code == 404
