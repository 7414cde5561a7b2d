"""The demo's own webhook receiver (`serve --demo` only): verifies each delivery and keeps the latest.

`POST /demo/webhooks` checks the Standard Webhooks signature against the company's stored secret (what
any receiver does with its copy of the secret) and answers 204, or 401 if it does not verify;
`GET /demo/webhooks` lists the latest deliveries this process received.
"""

from __future__ import annotations

import hmac
import json
import time
from collections import deque
from collections.abc import Mapping

from fastapi import APIRouter, Request, Response

from wabapool.api.deps import Context
from wabapool.domain.webhooks import secret_bytes, sign

KEPT_DELIVERIES = 100
# Standard Webhooks receivers refuse timestamps further than this from their clock (replays).
TOLERANCE_SECONDS = 5 * 60

router = APIRouter(prefix="/demo", tags=["demo"], include_in_schema=False)
_received: deque[dict[str, object]] = deque(maxlen=KEPT_DELIVERIES)


def _verified(key: bytes, headers: Mapping[str, str], body: bytes) -> bool:
    message_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > TOLERANCE_SECONDS:
        return False
    expected = sign(key, message_id=message_id, timestamp_seconds=int(stamp), body=body)
    offered = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


@router.post("/webhooks")
async def receive(request: Request, context: Context) -> Response:
    body = await request.body()
    try:
        company_id = int(json.loads(body)["company_id"])
    except (ValueError, KeyError, TypeError):
        return Response(status_code=400)
    secret = await context.service.webhook_secret(company_id)
    if secret is None:
        return Response(status_code=401)
    key = secret_bytes(secret)
    if not _verified(key, request.headers, body):
        return Response(status_code=401)
    event = json.loads(body)
    _received.appendleft({"webhook_id": request.headers["webhook-id"], "verified": True, "event": event})
    return Response(status_code=204)


@router.get("/webhooks")
async def latest() -> dict[str, object]:
    return {"deliveries": list(_received)}
