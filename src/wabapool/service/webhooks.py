"""The company's webhook: where its events go and the Standard Webhooks secret they are signed with.

The secret is sealed at rest (the PII sealer: authenticated encryption, key rotation) and returned
only once, when it is generated. Setting the webhook again re-enables one a 410 had disabled. The URL
itself is checked against server-side request forgery by the caller (api) and again at each delivery.
"""

from __future__ import annotations

import base64
import secrets

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.webhooks import GENERATED_SECRET_BYTES, InvalidSecret, secret_bytes, secret_from
from wabapool.pii import PiiSealer
from wabapool.storage import companies as company_store
from wabapool.storage.database import Database


def generate_secret() -> str:
    """A fresh `whsec_…` secret from the OS's randomness."""
    return secret_from(secrets.token_bytes(GENERATED_SECRET_BYTES))


def seal_secret(sealer: PiiSealer, secret: str) -> str:
    """The column value of a secret: base64 of its sealed bytes."""
    sealed = sealer.seal(secret)
    if sealed is None:
        raise RuntimeError("sealing a secret returned nothing")
    return base64.b64encode(sealed).decode()


def open_secret(sealer: PiiSealer, stored: str) -> str:
    """The secret back from its column value."""
    secret = sealer.open(base64.b64decode(stored))
    if secret is None:
        raise RuntimeError("opening a stored secret returned nothing")
    return secret


async def set_webhook(database: Database, sealer: PiiSealer, company_id: int, *, url: str, secret: str | None) -> str:
    """Store the URL and the secret (generated when absent); returns the secret."""
    if secret is None:
        secret = generate_secret()
    else:
        try:
            secret_bytes(secret)
        except InvalidSecret as exc:
            raise BillingError(Rejection.INVALID_REQUEST, str(exc), {"field": "secret"}) from exc
    stored = seal_secret(sealer, secret)
    async with database.transaction() as connection:
        if await company_store.get_company(connection, company_id) is None:
            raise BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
        await company_store.update_company(
            connection, company_id, webhook_url=url, webhook_secret=stored, webhook_disabled_at=None
        )
    return secret


async def delete_webhook(database: Database, company_id: int) -> None:
    """No webhook any more: the company's later events are kept as skipped."""
    async with database.transaction() as connection:
        if await company_store.get_company(connection, company_id) is None:
            raise BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
        await company_store.update_company(
            connection, company_id, webhook_url=None, webhook_secret=None, webhook_disabled_at=None
        )


async def webhook_secret(database: Database, sealer: PiiSealer, company_id: int) -> str | None:
    """The company's signing secret, opened; None when it has no webhook (or no such company)."""
    async with database.read() as connection:
        company = await company_store.get_company(connection, company_id)
    if company is None or company.webhook_secret is None:
        return None
    return open_secret(sealer, company.webhook_secret)
