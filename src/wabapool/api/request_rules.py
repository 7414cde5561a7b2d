"""What every request body and every answer must be, checked once before any route sees the request.

- A request that carries a body (`Content-Length` above 0, or `Transfer-Encoding`) must say
  `application/json` (charset UTF-8 when a charset is given): anything else is 415. A deduction sent as
  `text/plain` or a form was applied before; a browser's cross-site form cannot send JSON, so this is
  also what keeps a page on another site from posting to us with the user's cookies.
- The body is strict JSON: UTF-8, no `NaN`/`Infinity`, no object with a duplicated key (`{"company_id":
  101, "company_id": 102}` was taken last-wins and charged 102; another parser in front of us, a gateway
  or a log reader, could take the first). Each is a 400 in the envelope, field `body`.
- Every answer that has no `Cache-Control` of its own gets `no-store` (API answers carry balances and
  personal data: no shared or browser cache keeps them), and every answer `X-Content-Type-Options: nosniff`.

Pure ASGI (like `middleware.py`): it sits on the deduction hot path. It runs inside the request-context
middleware, so the body it reads is already bounded by `max_body_bytes` (413) and its answers carry the
request id.
"""

from __future__ import annotations

import json
from typing import NoReturn

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wabapool.api.errors import envelope

JSON_MEDIA_TYPE = "application/json"
NO_STORE = (b"cache-control", b"no-store")
NOSNIFF = (b"x-content-type-options", b"nosniff")


class DuplicateKey(ValueError):
    """A JSON object names the same key twice."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """The object_pairs_hook: the object, unless a key comes twice."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return result


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def body_problem(body: bytes) -> str | None:
    """Why `body` is not strict JSON (invalid UTF-8, invalid JSON, NaN, a duplicated key), or None."""
    try:
        json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except DuplicateKey as exc:
        # The key is the client's own text, cut short: never a value from the body.
        return f"a JSON object names the key {str(exc)[:64]!r} more than once"
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    except RecursionError:
        return "the body is nested too deeply"
    except ValueError:  # JSONDecodeError, NaN/Infinity, an integer of more than 4,300 digits
        return "the body is not valid JSON"
    return None


def _media_type_problem(content_type: bytes | None) -> str | None:
    """Why a body of this Content-Type is refused (415), or None for JSON in UTF-8."""
    if content_type is None:
        return "a request body needs Content-Type: application/json"
    media_type, _, parameters = content_type.decode("latin-1").partition(";")
    if media_type.strip().lower() != JSON_MEDIA_TYPE:
        return "request bodies are application/json only"
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return "a JSON body is UTF-8"
    return None


class RequestRules:
    """JSON-only bodies without duplicated keys; no-store and nosniff on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_safety_headers(send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if (length is None or length in (b"", b"0")) and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        problem = _media_type_problem(headers.get(b"content-type"))
        if problem is not None:
            await _refuse(send, 415, "unsupported_media_type", problem, {"content_type": JSON_MEDIA_TYPE})
            return
        body, more = await _read_body(receive)
        if not more:  # the client went away before the end of its body: nobody to answer
            return
        problem = body_problem(body) if body else None
        if problem is not None:
            await _refuse(send, 400, "validation_error", problem, {"field": "body"})
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole body (bounded by the request-context middleware) and whether it arrived whole."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", False
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the route the body already read, then waits on the client as before."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_safety_headers(send: Send) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {name.lower() for name, _ in headers}
            if b"cache-control" not in names:
                headers.append(NO_STORE)
            if b"x-content-type-options" not in names:
                headers.append(NOSNIFF)
            message["headers"] = headers
        await send(message)

    return send_with_headers


async def _refuse(send: Send, status: int, code: str, message: str, details: dict[str, object]) -> None:
    body = json.dumps(envelope(code, message, details)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
