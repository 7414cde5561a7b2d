"""Opaque page cursors: a position the server signed, for one company and one listing.

A cursor is `base64url(json position) "." base64url(HMAC-SHA256 tag)`. The tag
covers the listing's name and the company, so a cursor edited by hand, cut
short, made up, or taken from another company or another listing is refused
as a 400 before any query runs: it can neither fail inside the database nor
move a page into rows it was not issued for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.json_types import JSONValue

# A truncated HMAC-SHA256 (128 bits) is plenty for a tag nobody can query offline.
TAG_BYTES = 16
# The longest cursor the API accepts (the query parameter's own limit is the same).
CURSOR_MAX_LENGTH = 200


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: bytes, listing: str, company_id: int, body: bytes) -> bytes:
    message = f"{listing}\x00{company_id}\x00".encode() + body
    return hmac.digest(key, message, hashlib.sha256)[:TAG_BYTES]


def _refused() -> BillingError:
    return BillingError(Rejection.INVALID_REQUEST, "cursor is not one this API returned", {"field": "cursor"})


class CursorSigner:
    """Signs and checks page positions with a key derived from the PII key set (never sent anywhere)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a cursor key is at least 32 bytes")
        self._key = key

    def encode(self, listing: str, company_id: int, position: list[JSONValue]) -> str:
        body = json.dumps(position, separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(_tag(self._key, listing, company_id, body))}"

    def decode(self, listing: str, company_id: int, cursor: str) -> list[JSONValue]:
        """The position this server signed for this listing and company, or a 400 `invalid_request`."""
        if len(cursor) > CURSOR_MAX_LENGTH:
            raise _refused()
        encoded_body, separator, encoded_tag = cursor.partition(".")
        try:
            body, tag = _unb64(encoded_body), _unb64(encoded_tag)
        except (binascii.Error, ValueError) as exc:
            raise _refused() from exc
        if not separator or not hmac.compare_digest(tag, _tag(self._key, listing, company_id, body)):
            raise _refused()
        position = json.loads(body)
        if not isinstance(position, list):
            raise _refused()
        return position
