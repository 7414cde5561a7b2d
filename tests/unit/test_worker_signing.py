"""Standard Webhooks signatures: what we sign verifies with the `standardwebhooks` library, and only that."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from wabapool.domain.webhooks import InvalidSecret, event_body, headers, secret_bytes, secret_from
from wabapool.service.webhooks import generate_secret


def test_a_generated_secret_is_whsec_and_base64_of_32_random_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_") and len(secret_bytes(secret)) == 32
    assert generate_secret() != secret


@pytest.mark.parametrize(
    "secret",
    [
        "s3cret-but-no-prefix",
        "whsec_not*base64",
        "whsec_" + base64.b64encode(b"x" * 16).decode(),
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
    ],
)
def test_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(InvalidSecret):
        secret_bytes(secret)


def test_a_signed_delivery_verifies_with_standardwebhooks_and_a_tampered_one_does_not() -> None:
    secret = secret_from(bytes(range(24)))
    body = event_body(
        event_id="7b0d1c52-9f5e-4c7e-9a7e-3c2b1a0f9e8d",
        event_type="balance_low",
        company_id=42,
        created_at=datetime(2026, 11, 10, 3, 0, tzinfo=UTC),
        data={"total": 390, "available": 890},
    )
    signed = headers(
        secret_bytes(secret),
        message_id="7b0d1c52-9f5e-4c7e-9a7e-3c2b1a0f9e8d",
        timestamp_seconds=int(time.time()),
        body=body,
    )
    payload = Webhook(secret).verify(body, signed)
    assert payload["type"] == "balance_low" and payload["data"]["total"] == 390
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"390", b"999"), signed)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, signed)
