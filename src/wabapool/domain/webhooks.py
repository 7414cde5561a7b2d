"""Standard Webhooks, pure: `whsec_` secrets, the signed content, the body of a delivery.

The signature is `v1,` + base64(HMAC-SHA256(secret bytes, f"{id}.{timestamp}.{body}")), so any Standard
Webhooks library (Python's `standardwebhooks`, Svix's) verifies it on the receiver's side.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime

from wabapool.domain.json_types import JSONValue

SECRET_PREFIX = "whsec_"
# Standard Webhooks secrets carry 24 to 64 random bytes; we generate 32.
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
GENERATED_SECRET_BYTES = 32


class InvalidSecret(ValueError):
    """A secret that is not `whsec_` + base64 of 24..64 bytes."""


def secret_from(random_bytes: bytes) -> str:
    """A `whsec_…` secret of the given random bytes (the caller draws them)."""
    if not SECRET_MIN_BYTES <= len(random_bytes) <= SECRET_MAX_BYTES:
        raise InvalidSecret(f"a webhook secret holds {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes")
    return SECRET_PREFIX + base64.b64encode(random_bytes).decode()


def secret_bytes(secret: str) -> bytes:
    """The key bytes of a `whsec_…` secret; InvalidSecret when it is malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecret(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret("a webhook secret is whsec_ followed by base64") from exc
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise InvalidSecret(f"a webhook secret holds {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes")
    return key


def sign(key: bytes, *, message_id: str, timestamp_seconds: int, body: bytes) -> str:
    """The `webhook-signature` header value for one attempt."""
    content = f"{message_id}.{timestamp_seconds}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def event_body(
    *, event_id: str, event_type: str, company_id: int, created_at: datetime, data: Mapping[str, JSONValue]
) -> bytes:
    """The JSON body of a delivery: the same bytes on every attempt (only the headers change)."""
    document = {
        "id": event_id,
        "type": event_type,
        "company_id": company_id,
        "created_at": created_at.isoformat(),
        "data": dict(data),
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def headers(key: bytes, *, message_id: str, timestamp_seconds: int, body: bytes) -> dict[str, str]:
    """Every header of one attempt."""
    return {
        "content-type": "application/json",
        "user-agent": "wabapool-webhooks/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp_seconds),
        "webhook-signature": sign(key, message_id=message_id, timestamp_seconds=timestamp_seconds, body=body),
    }
