"""The hostile-input catalogue: what an attacker, or a buggy caller, sends, and what the service must answer.

Every case runs against the real app (ASGI, on SQLite and on PostgreSQL), provisioned once per backend,
and must answer its expected 4xx status and error code, in the one envelope, with a request id; never a
5xx; and write nothing: every table's rows are the same before and after. No answer may echo the
personal data the request carried (a customer's name or phone number).

The cases are data (`CASES`); `test_the_catalogue_covers_every_kind_of_hostile_input` counts them by
status and by kind (the closing note of issue 20 quotes the count by status).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from sqlalchemy import select

from tests.api_support import (
    API_KEY,
    INTERNAL,
    JWT_SECRET,
    PAYMENT_KEY,
    PUBLIC,
    api_client,
    bearer,
    deduction_body,
    provision,
    settings_for,
)
from tests.conftest import truncate_all
from wabapool.domain.limits import AMOUNT_MAX_MINOR, BATCH_MAX_ITEMS
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade
from wabapool.storage.tables import metadata

COMPANY, OTHER, V2 = 7101, 7102, 7103
WABA, WABA_2, OTHER_WABA, V2_WABA = "7101001", "7101002", "7102001", "7103001"
READER_KEY = "reader-key-0123456789abcdef"  # scope `read` only
NAME, PHONE = "Siti Rahayu", "+6281234567890"  # personal data: never echoed back
PERSONAL = (NAME, PHONE, "6281234567890", "Rahayu")
TEN_MB = 10 * 1024 * 1024
BIG = 2**63
DEDUCT = f"{INTERNAL}/quota-managements/deduction"
BATCH = f"{INTERNAL}/quota-managements/deductions"
REFUND = f"{INTERNAL}/quota-managements/refund"
TOP_UP = f"{INTERNAL}/quota-managements/top-up"
SETTLE = f"{INTERNAL}/quota-managements/settle-postpaid"
COMPANY_PATH = f"{INTERNAL}/companies/{COMPANY}"


def deduction(**changes: Any) -> dict[str, Any]:
    """A valid deduction of COMPANY carrying personal data, with `changes` (None deletes a field)."""
    body = deduction_body(COMPANY, "hostile-1", waba_id=WABA, customer_name=NAME, phone_number=PHONE)
    return _changed(body, changes)


def _changed(body: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(json.dumps(body))
    for key, value in changes.items():
        target, name = body, key
        if "." in key:
            outer, name = key.split(".", 1)
            target = body[outer]
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    return body


def payment(**changes: Any) -> dict[str, Any]:
    return _changed({"company_id": COMPANY, "amount": 1_000, "payment_reference": "pay-hostile"}, changes)


def refund(**changes: Any) -> dict[str, Any]:
    return _changed({"company_id": COMPANY, "unique_code": "seed-1", "refund_code": "r-hostile"}, changes)


def _token(claims: dict[str, Any], *, secret: str = JWT_SECRET, algorithm: str = "HS256") -> dict[str, str]:
    now = datetime.now(UTC)
    payload = {"company_id": COMPANY, "role": "owner", "iat": now, "exp": now + timedelta(hours=1), **claims}
    if algorithm == "none":
        token = jwt.encode(payload, None, algorithm="none")
    else:
        token = jwt.encode(payload, secret, algorithm=algorithm)
    return {"Authorization": f"Bearer {token}"}


INTERNAL_AUTH = {"X-Api-Key": API_KEY}
OWNER = bearer(COMPANY)


@dataclass(frozen=True)
class Case:
    """One hostile request and the answer it must get."""

    name: str
    kind: str
    method: str
    path: str
    status: int
    code: str
    json_body: Any = None
    raw: bytes | None = None
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=lambda: dict(INTERNAL_AUTH))
    params: dict[str, str] | None = None
    chunked: bool = False
    # Filled in from the seeded data (e.g. another company's real cursor) just before sending.
    dynamic: Callable[[dict[str, str]], dict[str, str]] | None = None


def body_case(name: str, kind: str, path: str, body: Any, status: int = 400, code: str = "validation_error") -> Case:
    method = "POST" if "quota-managements" in path else "PUT"
    headers = dict(OWNER) if path.startswith(PUBLIC) else dict(INTERNAL_AUTH)
    return Case(name, kind, method, path, status, code, json_body=body, headers=headers)


def raw_case(
    name: str, kind: str, raw: bytes, status: int, code: str, *, content_type: str | None = "application/json"
) -> Case:
    return Case(name, kind, "POST", DEDUCT, status, code, raw=raw, content_type=content_type)


def get_case(
    name: str, kind: str, path: str, status: int, code: str, *, params: dict[str, str] | None = None, **kw: Any
) -> Case:
    return Case(name, kind, "GET", f"{PUBLIC}{path}", status, code, headers=kw.pop("headers", OWNER), params=params)


VALID_JSON = json.dumps(deduction()).encode()

CASES: list[Case] = [
    # --- wrong types -------------------------------------------------------------------------------
    body_case("company_id as a string", "type", DEDUCT, deduction(company_id=str(COMPANY))),
    body_case("company_id as a float", "type", DEDUCT, deduction(company_id=7101.0)),
    body_case("company_id as a boolean", "type", DEDUCT, deduction(company_id=True)),
    body_case("quantity as a string", "type", DEDUCT, deduction(quantity="1")),
    body_case("quantity as a boolean", "type", DEDUCT, deduction(quantity=True)),
    body_case("quantity as a list", "type", DEDUCT, deduction(quantity=[1])),
    body_case("unique_code as a number", "type", DEDUCT, deduction(unique_code=123)),
    body_case("extra_attrs as a string", "type", DEDUCT, deduction(extra_attrs="7101001")),
    body_case("extra_attrs as null", "type", DEDUCT, {**deduction(), "extra_attrs": None}),
    body_case("waba_id as a number", "type", DEDUCT, deduction(**{"extra_attrs.waba_id": 7101001})),
    body_case("batch items as an object", "type", BATCH, {"items": deduction()}),
    body_case("amount as a string", "type", TOP_UP, payment(amount="1000")),
    body_case("show_waba_id as a string", "type", f"{PUBLIC}/billing_preferences", {"show_waba_id": "yes"}),
    body_case("body as a JSON array", "type", DEDUCT, [deduction()]),
    body_case("body as a JSON string", "type", DEDUCT, "deduction"),
    # --- missing and extra fields ----------------------------------------------------------------
    *(
        body_case(f"missing {name}", "missing", DEDUCT, deduction(**{name: None}))
        for name in ("company_id", "billing_code", "deduction_code", "unique_code", "quantity", "extra_attrs")
    ),
    body_case("missing extra_attrs.waba_id", "missing", DEDUCT, deduction(**{"extra_attrs.waba_id": None})),
    body_case("missing refund_code", "missing", REFUND, refund(refund_code=None)),
    body_case("missing payment_reference", "missing", TOP_UP, payment(payment_reference=None)),
    body_case("missing url", "missing", f"{COMPANY_PATH}/webhook", {"secret": "whsec_" + "A" * 40}),
    body_case("extra field amount on a deduction", "extra", DEDUCT, deduction(amount=1)),
    body_case("extra field value_before", "extra", DEDUCT, deduction(value_before=10**12)),
    body_case(
        "extra field company_id on preferences",
        "extra",
        f"{PUBLIC}/billing_preferences",
        {"show_waba_id": True, "company_id": OTHER},
    ),
    body_case("extra field on a refund", "extra", REFUND, refund(amount=10**9)),
    body_case("extra field on a company", "extra", COMPANY_PATH, {"currency": "IDR", "balance": 10**9}),
    # --- numbers -------------------------------------------------------------------------------
    body_case("quantity zero", "number", DEDUCT, deduction(quantity=0)),
    body_case("quantity negative", "number", DEDUCT, deduction(quantity=-1)),
    body_case("quantity fractional", "number", DEDUCT, deduction(quantity=1.5)),
    body_case("quantity 2^63", "number", DEDUCT, deduction(quantity=BIG)),
    body_case("quantity 2^64", "number", DEDUCT, deduction(quantity=2**64)),
    body_case("quantity past the limit", "number", DEDUCT, deduction(quantity=1_000_001)),
    body_case("company_id zero", "number", DEDUCT, deduction(company_id=0)),
    body_case("company_id negative", "number", DEDUCT, deduction(company_id=-COMPANY)),
    body_case("company_id 2^63", "number", DEDUCT, deduction(company_id=BIG)),
    raw_case(
        "quantity of 5,000 digits",
        "number",
        VALID_JSON.replace(b'"quantity": 1', b'"quantity": ' + b"9" * 5000),
        400,
        "validation_error",
    ),
    raw_case(
        "quantity in exponent form",
        "number",
        VALID_JSON.replace(b'"quantity": 1', b'"quantity": 1e0'),
        400,
        "validation_error",
    ),
    body_case("top-up amount zero", "number", TOP_UP, payment(amount=0)),
    body_case("top-up amount negative", "number", TOP_UP, payment(amount=-1_000)),
    body_case("top-up amount fractional", "number", TOP_UP, payment(amount=10.5)),
    body_case(
        "top-up amount past 2^53-1", "number", TOP_UP, payment(amount=AMOUNT_MAX_MINOR + 1), 400, "amount_too_large"
    ),
    body_case("top-up amount 2^63", "number", TOP_UP, payment(amount=BIG), 400, "amount_too_large"),
    body_case(
        "top-up to past the ceiling", "number", TOP_UP, payment(amount=AMOUNT_MAX_MINOR), 400, "amount_too_large"
    ),
    body_case(
        "settlement past what postpaid used", "number", SETTLE, payment(amount=10**9), 400, "settlement_exceeds_used"
    ),
    body_case("allowance negative", "number", COMPANY_PATH, {"package": {"allowance": -1}}),
    body_case(
        "allowance past 2^53-1",
        "number",
        COMPANY_PATH,
        {"package": {"allowance": AMOUNT_MAX_MINOR + 1}},
        400,
        "amount_too_large",
    ),
    body_case(
        "postpaid limit 2^63", "number", COMPANY_PATH, {"package": {"postpaid_limit": BIG}}, 400, "amount_too_large"
    ),
    body_case("anchor day 32", "number", COMPANY_PATH, {"package": {"cycle_anchor_day": 32}}),
    body_case("threshold 100.5", "number", COMPANY_PATH, {"package": {"threshold_percent": 100.5}}),
    body_case("unit price negative", "number", f"{INTERNAL}/price-list/wa_marketing_id", {"unit_price": -1}),
    body_case(
        "v2 WABA allowance that sums past the ceiling",
        "number",
        f"{INTERNAL}/companies/{V2}/wabas/7103002",
        {"name": "Second", "package": {"allowance": AMOUNT_MAX_MINOR}},
        400,
        "amount_too_large",
    ),
    # --- strings: long, non-ASCII, control characters --------------------------------------------
    body_case("unique_code of 129 characters", "string", DEDUCT, deduction(unique_code="u" * 129)),
    body_case("unique_code empty", "string", DEDUCT, deduction(unique_code="")),
    body_case("billing_code of 65 characters", "string", DEDUCT, deduction(billing_code="b" * 65)),
    body_case("waba_id of 33 digits", "string", DEDUCT, deduction(**{"extra_attrs.waba_id": "7" * 33})),
    body_case("waba_id in full-width digits", "string", DEDUCT, deduction(**{"extra_attrs.waba_id": "７１０１００１"})),
    body_case("waba_id with a space", "string", DEDUCT, deduction(**{"extra_attrs.waba_id": "7101 001"})),
    body_case(
        "customer_name of 10,000 characters", "string", DEDUCT, deduction(**{"extra_attrs.customer_name": NAME * 1000})
    ),
    body_case("broadcast_id of 65 characters", "string", DEDUCT, deduction(**{"extra_attrs.broadcast_id": "b" * 65})),
    body_case("phone_number of 33 characters", "string", DEDUCT, deduction(**{"extra_attrs.phone_number": PHONE * 3})),
    body_case("customer_name with NUL", "control", DEDUCT, deduction(**{"extra_attrs.customer_name": f"{NAME}\x00"})),
    body_case("unique_code with NUL", "control", DEDUCT, deduction(unique_code="a\x00b")),
    body_case("unique_code with a line feed", "control", DEDUCT, deduction(unique_code="a\nb")),
    body_case("unique_code with a tab", "control", DEDUCT, deduction(unique_code="a\tb")),
    body_case("unique_code with a zero-width space", "control", DEDUCT, deduction(unique_code="a\u200bb")),
    body_case("unique_code with a right-to-left override", "control", DEDUCT, deduction(unique_code="a\u202eb")),
    body_case("message_id with a carriage return", "control", DEDUCT, deduction(**{"extra_attrs.message_id": "m\rx"})),
    body_case("company name of 201 characters", "string", f"{COMPANY_PATH}/wabas/7101003", {"name": "n" * 201}),
    body_case("company name empty", "string", f"{COMPANY_PATH}/wabas/7101003", {"name": "   "}),
    body_case("currency in lower case", "string", COMPANY_PATH, {"currency": "idr"}),
    body_case("currency in full-width letters", "string", COMPANY_PATH, {"currency": "ＩＤＲ"}),
    body_case("timezone of 65 characters", "string", COMPANY_PATH, {"timezone": "A" * 65}),
    # --- formula-leading and separator characters in generated ids -------------------------------
    *(
        body_case(f"unique_code {label}", "formula", DEDUCT, deduction(unique_code=value))
        for label, value in [
            ("=1+1", "=1+1"),
            ("+1", "+1"),
            ("-1", "-1"),
            ("@SUM", "@SUM(A1)"),
            ("full-width =", "\uff1d1+1"),
            ("full-width +", "\uff0b1"),
            ("full-width -", "\uff0d1"),
            ("full-width @", "\uff20x"),
            ("tab-led", "\t=1+1"),
            ("CR-led", "\r=1+1"),
            ("LF-led", "\n=1+1"),
            ("NBSP-led", "\u00a0=1+1"),
            ("space-led", " =1+1"),
            ("with ;", "x;=1+1"),
        ]
    ),
    body_case(
        "broadcast_id =HYPERLINK",
        "formula",
        DEDUCT,
        deduction(**{"extra_attrs.broadcast_id": '=HYPERLINK("http://x","y")'}),
    ),
    body_case("message_id +cmd", "formula", DEDUCT, deduction(**{"extra_attrs.message_id": "+cmd|' /C calc'!A0"})),
    body_case("category @x", "formula", DEDUCT, deduction(**{"extra_attrs.category": "@x"})),
    body_case("deduction_code =cmd", "formula", DEDUCT, deduction(deduction_code="=cmd")),
    body_case("billing_code -2+3", "formula", DEDUCT, deduction(billing_code="-2+3")),
    body_case("waba_id -100", "formula", DEDUCT, deduction(**{"extra_attrs.waba_id": "-100"})),
    body_case("refund_code =1+1", "formula", REFUND, refund(refund_code="=1+1")),
    body_case("payment_reference @x", "formula", TOP_UP, payment(payment_reference="@x")),
    body_case("payment_reference with ;", "formula", TOP_UP, payment(payment_reference="pay;=1")),
    Case(
        "price-list code =cmd",
        "formula",
        "PUT",
        f"{INTERNAL}/price-list/%3Dcmd",
        400,
        "validation_error",
        json_body={"unit_price": 1},
    ),
    Case(
        "WABA id path -1",
        "formula",
        "PUT",
        f"{COMPANY_PATH}/wabas/-1",
        400,
        "validation_error",
        json_body={"name": "x"},
    ),
    # --- SQL-injection strings -------------------------------------------------------------------
    body_case("unique_code DROP TABLE", "sql", DEDUCT, deduction(unique_code="1'; DROP TABLE ledger_entries;--")),
    body_case("waba_id OR 1=1", "sql", DEDUCT, deduction(**{"extra_attrs.waba_id": "7101001' OR '1'='1"})),
    body_case(
        "deduction_code OR 1=1", "sql", DEDUCT, deduction(deduction_code="wa' OR 1=1--"), 400, "unknown_deduction_code"
    ),
    body_case(
        "unique_code UNION SELECT (unknown deduction)",
        "sql",
        REFUND,
        refund(unique_code="x' UNION SELECT secret FROM pii_keys--"),
        404,
        "unknown_deduction",
    ),
    get_case(
        "logs filter waba_id OR 1=1", "sql", "/mcc_logs", 400, "validation_error", params={"waba_id": "' OR 1=1--"}
    ),
    get_case("logs cursor with SQL", "sql", "/mcc_logs", 400, "invalid_request", params={"cursor": "1' OR '1'='1"}),
    # --- invalid JSON, invalid UTF-8, duplicated keys --------------------------------------------
    raw_case(
        "invalid UTF-8", "encoding", VALID_JSON.replace(b"hostile-1", b"hostile-\xff\xfe"), 400, "validation_error"
    ),
    raw_case(
        "overlong UTF-8 of /",
        "encoding",
        VALID_JSON.replace(b"hostile-1", b"hostile\xc0\xaf1"),
        400,
        "validation_error",
    ),
    raw_case("UTF-16 body", "encoding", json.dumps(deduction()).encode("utf-16"), 400, "validation_error"),
    raw_case("UTF-8 BOM", "encoding", b"\xef\xbb\xbf" + VALID_JSON, 400, "validation_error"),
    raw_case(
        "lone surrogate escape",
        "encoding",
        VALID_JSON.replace(b"hostile-1", b"hostile-\\ud800"),
        400,
        "validation_error",
    ),
    raw_case("NaN quantity", "json", VALID_JSON.replace(b'"quantity": 1', b'"quantity": NaN'), 400, "validation_error"),
    raw_case(
        "Infinity quantity",
        "json",
        VALID_JSON.replace(b'"quantity": 1', b'"quantity": Infinity'),
        400,
        "validation_error",
    ),
    raw_case("truncated JSON", "json", VALID_JSON[:-5], 400, "validation_error"),
    raw_case("trailing garbage", "json", VALID_JSON + b" {}", 400, "validation_error"),
    raw_case("JSON null", "json", b"null", 400, "validation_error"),
    raw_case("single quotes", "json", VALID_JSON.replace(b'"', b"'"), 400, "validation_error"),
    raw_case("nested 100,000 deep", "json", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 400, "validation_error"),
    raw_case(
        "duplicated company_id",
        "duplicate",
        VALID_JSON.replace(b'"company_id": 7101', b'"company_id": 7101, "company_id": 7102'),
        400,
        "validation_error",
    ),
    raw_case(
        "duplicated waba_id in extra_attrs",
        "duplicate",
        VALID_JSON.replace(b'"waba_id": "7101001"', b'"waba_id": "7101001", "waba_id": "7102001"'),
        400,
        "validation_error",
    ),
    raw_case(
        "duplicated key through an escape",
        "duplicate",
        VALID_JSON.replace(b'"quantity": 1', b'"quantity": 1, "\\u0071uantity": 2'),
        400,
        "validation_error",
    ),
    Case(
        "duplicated show_waba_id",
        "duplicate",
        "PUT",
        f"{PUBLIC}/billing_preferences",
        400,
        "validation_error",
        raw=b'{"show_waba_id": false, "show_waba_id": true}',
        headers=OWNER,
    ),
    # --- content types -----------------------------------------------------------------------------
    *(
        raw_case(f"deduction as {label}", "content-type", VALID_JSON, 415, "unsupported_media_type", content_type=value)
        for label, value in [
            ("text/plain", "text/plain"),
            ("a form", "application/x-www-form-urlencoded"),
            ("multipart", "multipart/form-data; boundary=x"),
            ("no content type", None),
            ("XML", "application/xml"),
            ("text/json", "text/json"),
            ("JSON in latin-1", "application/json; charset=latin-1"),
        ]
    ),
    Case(
        "top-up as a form",
        "content-type",
        "POST",
        TOP_UP,
        415,
        "unsupported_media_type",
        raw=b"company_id=7101&amount=1000&payment_reference=p",
        content_type="application/x-www-form-urlencoded",
    ),
    Case(
        "preferences as text/plain",
        "content-type",
        "PUT",
        f"{PUBLIC}/billing_preferences",
        415,
        "unsupported_media_type",
        raw=b'{"show_waba_id": true}',
        content_type="text/plain",
        headers=OWNER,
    ),
    Case(
        "analytics as text/plain (a beacon)",
        "content-type",
        "POST",
        f"{PUBLIC}/analytics/events",
        415,
        "unsupported_media_type",
        raw=b'{"name": "x"}',
        content_type="text/plain",
        headers=OWNER,
    ),
    # --- empty and huge bodies -------------------------------------------------------------------
    raw_case("empty body with Content-Length: 0", "size", b"", 400, "validation_error"),
    Case("empty body chunked", "size", "POST", DEDUCT, 400, "validation_error", raw=b"", chunked=True),
    raw_case("10 MB body with Content-Length", "size", b'{"a": "' + b"x" * TEN_MB + b'"}', 413, "payload_too_large"),
    Case(
        "10 MB body chunked without Content-Length",
        "size",
        "POST",
        DEDUCT,
        413,
        "payload_too_large",
        raw=b'{"a": "' + b"x" * TEN_MB + b'"}',
        chunked=True,
    ),
    Case(
        "10 MB text/plain body",
        "size",
        "POST",
        DEDUCT,
        413,
        "payload_too_large",
        raw=b"x" * TEN_MB,
        content_type="text/plain",
    ),
    body_case(
        "batch of 1,001 items",
        "size",
        BATCH,
        {"items": [deduction(unique_code=f"b-{i}") for i in range(BATCH_MAX_ITEMS + 1)]},
        413,
        "payload_too_large",
    ),
    # --- internal API keys -------------------------------------------------------------------------
    Case("no API key", "auth", "POST", DEDUCT, 401, "unauthorized", json_body=deduction(), headers={}),
    Case(
        "wrong API key",
        "auth",
        "POST",
        DEDUCT,
        401,
        "unauthorized",
        json_body=deduction(),
        headers={"X-Api-Key": "pipeline-key-0123456789abcdeX"},
    ),
    Case(
        "API key with a trailing space",
        "auth",
        "POST",
        DEDUCT,
        401,
        "unauthorized",
        json_body=deduction(),
        headers={"X-Api-Key": API_KEY + " "},
    ),
    Case(
        "API key as a bearer token",
        "auth",
        "POST",
        DEDUCT,
        401,
        "unauthorized",
        json_body=deduction(),
        headers={"Authorization": f"Bearer {API_KEY}"},
    ),
    Case(
        "out-of-scope key deducts",
        "auth",
        "POST",
        DEDUCT,
        403,
        "forbidden",
        json_body=deduction(),
        headers={"X-Api-Key": READER_KEY},
    ),
    Case(
        "out-of-scope key tops up",
        "auth",
        "POST",
        TOP_UP,
        403,
        "forbidden",
        json_body=payment(),
        headers={"X-Api-Key": READER_KEY},
    ),
    Case(
        "out-of-scope key provisions",
        "auth",
        "PUT",
        COMPANY_PATH,
        403,
        "forbidden",
        json_body={"currency": "USD"},
        headers={"X-Api-Key": READER_KEY},
    ),
    Case(
        "a bearer token on the internal API",
        "auth",
        "PUT",
        COMPANY_PATH,
        401,
        "unauthorized",
        json_body={"currency": "USD"},
        headers=OWNER,
    ),
    # --- public bearer tokens ----------------------------------------------------------------------
    get_case("no token", "token", "/billings/info", 401, "unauthorized", headers={}),
    get_case("not a JWT", "token", "/billings/info", 401, "unauthorized", headers={"Authorization": "Bearer abc"}),
    get_case("Basic scheme", "token", "/billings/info", 401, "unauthorized", headers={"Authorization": "Basic YTpi"}),
    get_case(
        "forged signature",
        "token",
        "/billings/info",
        401,
        "unauthorized",
        headers=_token({}, secret="another-secret-with-enough-entropy-012345"),
    ),
    get_case("alg none", "token", "/billings/info", 401, "unauthorized", headers=_token({}, algorithm="none")),
    get_case(
        "expired",
        "token",
        "/billings/info",
        401,
        "unauthorized",
        headers=_token({"exp": datetime.now(UTC) - timedelta(hours=2)}),
    ),
    get_case(
        "not valid yet",
        "token",
        "/billings/info",
        401,
        "unauthorized",
        headers=_token({"nbf": datetime.now(UTC) + timedelta(hours=2)}),
    ),
    get_case("without a role", "token", "/billings/info", 401, "unauthorized", headers=_token({"role": None})),
    get_case("unknown role", "token", "/billings/info", 401, "unauthorized", headers=_token({"role": "superadmin"})),
    get_case(
        "token company_id 2^63", "token", "/billings/info", 401, "unauthorized", headers=_token({"company_id": BIG})
    ),
    get_case(
        "company_id as SQL",
        "token",
        "/billings/info",
        401,
        "unauthorized",
        headers=_token({"company_id": "7101 OR 1=1"}),
    ),
    get_case(
        "token of 10,000 characters",
        "token",
        "/billings/info",
        401,
        "unauthorized",
        headers={"Authorization": "Bearer " + "a" * 10_000},
    ),
    get_case(
        "a company that does not exist", "token", "/billings/info", 404, "unknown_company", headers=bearer(424242)
    ),
    get_case(
        "statements of a company that does not exist",
        "token",
        "/statements",
        404,
        "unknown_company",
        headers=bearer(424242),
    ),
    get_case("agent reads the logs", "token", "/mcc_logs", 403, "forbidden", headers=bearer(COMPANY, "agent")),
    get_case(
        "member downloads the CSV",
        "token",
        "/download_broadcast_deduction",
        403,
        "forbidden",
        headers=bearer(COMPANY, "member"),
    ),
    Case(
        "supervisor writes preferences",
        "token",
        "PUT",
        f"{PUBLIC}/billing_preferences",
        403,
        "forbidden",
        json_body={"show_waba_id": True},
        headers=bearer(COMPANY, "supervisor"),
    ),
    # --- another company's WABA ------------------------------------------------------------------
    body_case(
        "deduction on another company's WABA",
        "tenant",
        DEDUCT,
        deduction(**{"extra_attrs.waba_id": OTHER_WABA}),
        404,
        "unknown_waba",
    ),
    body_case("top-up of another company's WABA", "tenant", TOP_UP, payment(waba_id=OTHER_WABA), 404, "unknown_waba"),
    body_case(
        "refund of another company's deduction",
        "tenant",
        REFUND,
        refund(unique_code="other-1"),
        404,
        "unknown_deduction",
    ),
    Case(
        "provision another company's WABA",
        "tenant",
        "PUT",
        f"{COMPANY_PATH}/wabas/{OTHER_WABA}",
        409,
        "waba_owned_elsewhere",
        json_body={"name": "Taken"},
    ),
    get_case(
        "logs of another company's WABA", "tenant", "/mcc_logs", 404, "unknown_waba", params={"waba_id": OTHER_WABA}
    ),
    get_case(
        "usage of another company's WABA", "tenant", "/usage", 404, "unknown_waba", params={"waba_id": OTHER_WABA}
    ),
    get_case(
        "CSV of another company's WABA",
        "tenant",
        "/download_broadcast_deduction",
        404,
        "unknown_waba",
        params={"waba_id": OTHER_WABA},
    ),
    body_case(
        "deduction for an unknown company", "tenant", DEDUCT, deduction(company_id=424242), 404, "unknown_company"
    ),
    body_case("v2 top-up without waba_id", "tenant", TOP_UP, payment(company_id=V2), 400, "invalid_request"),
    # --- tampered cursors and query parameters ---------------------------------------------------
    get_case("logs cursor not base64", "cursor", "/mcc_logs", 400, "invalid_request", params={"cursor": "%%%"}),
    get_case(
        "logs cursor of 201 characters", "cursor", "/mcc_logs", 400, "validation_error", params={"cursor": "a" * 201}
    ),
    Case(
        "logs cursor of another company",
        "cursor",
        "GET",
        f"{PUBLIC}/mcc_logs",
        400,
        "invalid_request",
        headers=OWNER,
        dynamic=lambda seeded: {"cursor": seeded["other_logs_cursor"]},
    ),
    Case(
        "logs cursor with one character changed",
        "cursor",
        "GET",
        f"{PUBLIC}/mcc_logs",
        400,
        "invalid_request",
        headers=bearer(OTHER),
        dynamic=lambda seeded: {"cursor": _flip(seeded["other_logs_cursor"])},
    ),
    Case(
        "events cursor of the logs",
        "cursor",
        "GET",
        f"{PUBLIC}/billing_events",
        400,
        "invalid_request",
        headers=bearer(OTHER),
        dynamic=lambda seeded: {"cursor": seeded["other_logs_cursor"]},
    ),
    get_case(
        "events cursor tampered",
        "cursor",
        "/billing_events",
        400,
        "invalid_request",
        params={"cursor": "eyJhIjoxfQ.AAAA"},
    ),
    *(
        get_case(
            f"statements cursor {label}", "cursor", "/statements", 400, "invalid_request", params={"cursor": value}
        )
        for label, value in [
            ("at year 1 +14:00", "0001-01-01T00:00:00+14:00~1"),
            ("at year 9999 -14:00", "9999-12-31T23:59:59-14:00~1"),
            ("without a zone", "2026-01-01T00:00:00~1"),
            ("with id 0", "2026-01-01T00:00:00+00:00~0"),
            ("with id 2^63", f"2026-01-01T00:00:00+00:00~{BIG}"),
            ("not a time", "yesterday~1"),
        ]
    ),
    get_case("logs limit 0", "query", "/mcc_logs", 400, "validation_error", params={"limit": "0"}),
    get_case("logs limit 201", "query", "/mcc_logs", 400, "validation_error", params={"limit": "201"}),
    get_case("logs limit not a number", "query", "/mcc_logs", 400, "validation_error", params={"limit": "ten"}),
    get_case("logs from month 13", "query", "/mcc_logs", 400, "invalid_request", params={"from": "2026-13-01"}),
    get_case(
        "logs from year 1 +14:00",
        "query",
        "/mcc_logs",
        400,
        "invalid_request",
        params={"from": "0001-01-01T00:00:00+14:00"},
    ),
    get_case(
        "logs to before from",
        "query",
        "/mcc_logs",
        400,
        "invalid_request",
        params={"from": "2026-12-02T00:00:00+00:00", "to": "2026-12-01T00:00:00+00:00"},
    ),
    get_case(
        "logs from without a zone", "query", "/mcc_logs", 400, "invalid_request", params={"from": "2026-12-01T00:00:00"}
    ),
    get_case(
        "CSV to at year 9999 -14:00",
        "query",
        "/download_broadcast_deduction",
        400,
        "invalid_request",
        params={"to": "9999-12-31T23:59:59-14:00"},
    ),
    get_case(
        "usage from year 1 +14:00",
        "query",
        "/usage",
        400,
        "invalid_request",
        params={"from": "0001-01-01T00:00:00+14:00"},
    ),
    get_case(
        "phone filter of 33 characters",
        "query",
        "/mcc_logs",
        400,
        "validation_error",
        params={"phone_number": PHONE * 3},
    ),
    get_case(
        "phone filter with NUL", "query", "/mcc_logs", 400, "validation_error", params={"phone_number": PHONE + "\x00"}
    ),
    # --- currencies, time zones, webhooks ----------------------------------------------------------
    *(
        body_case(
            f"currency {code}",
            "currency",
            COMPANY_PATH,
            {"currency": code},
            400,
            "validation_error" if len(code) != 3 or not code.isupper() else "invalid_request",
        )
        for code in ("ZZZ", "XAU", "XDR", "XTS", "XXX", "US", "DEM")
    ),
    *(
        body_case(f"timezone {zone!r}", "timezone", COMPANY_PATH, {"timezone": zone}, 400, "invalid_request")
        for zone in ("Asia", "localtime", "posixrules", "Factory", "Asia/Calcutta", "../../etc/passwd", "UTC\x00")
    ),
    body_case("billing_version v4", "type", COMPANY_PATH, {"billing_version": "v4"}),
    *(
        body_case(f"webhook {label}", "ssrf", f"{COMPANY_PATH}/webhook", {"url": url}, 400, "invalid_request")
        for label, url in [
            ("6to4 metadata", "https://[2002:a9fe:a9fe::]/latest/meta-data"),
            ("6to4 loopback", "https://[2002:7f00:1::]/hook"),
            ("Teredo loopback client", "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook"),
            ("NAT64 metadata", "https://[64:ff9b::a9fe:a9fe]/hook"),
            ("local NAT64 loopback", "https://[64:ff9b:1::7f00:1]/hook"),
            ("IPv4-mapped loopback", "https://[::ffff:127.0.0.1]/hook"),
            ("IPv4-compatible private", "https://[::10.0.0.1]/hook"),
            ("metadata address", "https://169.254.169.254/latest/meta-data"),
            ("plain http", "http://hooks.example.com/hook"),
            ("with credentials", "https://user:pw@hooks.example.com/hook"),
        ]
    ),
    body_case("webhook javascript: URL", "ssrf", f"{COMPANY_PATH}/webhook", {"url": "javascript:alert(1)//x"}),
    body_case(
        "webhook secret too short",
        "ssrf",
        f"{COMPANY_PATH}/webhook",
        {"url": "https://hooks.example.com/x", "secret": "short"},
    ),
    # --- paths and methods -------------------------------------------------------------------------
    Case(
        "deduction with a trailing slash",
        "path",
        "POST",
        f"{DEDUCT}/",
        404,
        "not_found",
        json_body=deduction(),
        headers={**INTERNAL_AUTH, "Host": "evil.example"},
    ),
    get_case("billing info with a trailing slash", "path", "/billings/info/", 404, "not_found"),
    Case("GET on the deduction endpoint", "path", "GET", DEDUCT, 405, "method_not_allowed"),
    get_case("an unknown path", "path", "/../../etc/passwd", 404, "not_found"),
    Case(
        "company id 2^63 in the path",
        "path",
        "PUT",
        f"{INTERNAL}/companies/{BIG}",
        400,
        "validation_error",
        json_body={"currency": "IDR"},
    ),
    Case(
        "analytics name with personal data",
        "path",
        "POST",
        f"{PUBLIC}/analytics/events",
        400,
        "unknown_event",
        json_body={"name": NAME, "properties": {"phone": PHONE}},
        headers=OWNER,
    ),
]


def _flip(cursor: str) -> str:
    """The cursor with one character changed (a signature can no longer match)."""
    middle = len(cursor) // 2
    return cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1 :]


async def _fingerprint(database: Database) -> str:
    """A digest of every row of every table: what 'nothing written' compares."""
    digest = hashlib.sha256()
    async with database.read() as connection:
        for table in metadata.sorted_tables:
            rows = (await connection.execute(select(table))).all()
            digest.update(table.name.encode())
            for row in sorted(repr(tuple(row)) for row in rows):
                digest.update(row.encode())
    return digest.hexdigest()


@dataclass
class Service:
    client: httpx.AsyncClient
    database: Database
    seeded: dict[str, str]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgres"])
async def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    """The app, provisioned once per backend: three companies, a deduction with personal data, a top-up."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'api.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("postgres_url")
        database = Database(url)
        await truncate_all(database)
        await database.dispose()
    keys = f"pipeline:{API_KEY},payments:{PAYMENT_KEY},reader:{READER_KEY}:read"
    async with api_client(settings_for(url, api_keys=keys)) as (client, context):
        seeded = await _seed(client)
        yield Service(client, context.service.database, seeded)


async def _seed(client: httpx.AsyncClient) -> dict[str, str]:
    await provision(client, COMPANY, wabas=(WABA, WABA_2), allowance=100_000, postpaid_limit=50_000)
    await provision(client, OTHER, wabas=(OTHER_WABA,))
    for code, waba, company in (
        ("seed-1", WABA, COMPANY),
        ("other-1", OTHER_WABA, OTHER),
        ("other-2", OTHER_WABA, OTHER),
    ):
        body = deduction_body(company, code, waba_id=waba, customer_name=NAME, phone_number=PHONE)
        response = await client.post(DEDUCT, json=body, headers=INTERNAL_AUTH)
        assert response.status_code == 200, response.text
    response = await client.post(TOP_UP, json=payment(payment_reference="seed-pay"), headers=INTERNAL_AUTH)
    assert response.status_code == 200, response.text
    v2 = {"billing_version": "v2", "package": {"allowance": AMOUNT_MAX_MINOR - 10}}
    assert (await client.put(f"{INTERNAL}/companies/{V2}", json=v2, headers=INTERNAL_AUTH)).status_code == 200
    response = await client.put(
        f"{INTERNAL}/companies/{V2}/wabas/{V2_WABA}", json={"name": "Own"}, headers=INTERNAL_AUTH
    )
    assert response.status_code == 200, response.text
    page = (await client.get(f"{PUBLIC}/mcc_logs", params={"limit": "1"}, headers=bearer(OTHER))).json()
    assert page["next_cursor"], page
    return {"other_logs_cursor": page["next_cursor"]}


def _request(service: Service, case: Case) -> httpx.Request:
    headers = dict(case.headers)
    if case.json_body is not None and case.raw is None:
        content: Any = json.dumps(case.json_body).encode()
    else:
        content = case.raw
    if case.chunked and content is not None:
        data = content

        async def stream() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 1 << 20):
                yield data[start : start + (1 << 20)]

        content = stream()
    params = case.dynamic(service.seeded) if case.dynamic else case.params
    request = service.client.build_request(case.method, case.path, content=content, headers=headers, params=params)
    request.headers.pop("content-type", None)
    if content is not None and case.content_type is not None:
        request.headers["content-type"] = case.content_type
    return request


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.kind}: {case.name}")
async def test_a_hostile_request_is_refused_in_the_envelope_and_writes_nothing(service: Service, case: Case) -> None:
    before = await _fingerprint(service.database)
    response = await service.client.send(_request(service, case))
    assert response.status_code == case.status, response.text[:500]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == case.code, body
    assert response.headers.get("x-request-id")
    for personal in PERSONAL:
        assert personal not in response.text, f"{personal!r} echoed back"
    assert await _fingerprint(service.database) == before, "the refused request wrote something"


def test_the_catalogue_covers_every_kind_of_hostile_input() -> None:
    by_status = Counter(case.status for case in CASES)
    by_kind = Counter(case.kind for case in CASES)
    assert len(CASES) >= 120, len(CASES)
    assert len({case.name for case in CASES}) == len(CASES), "case names are unique"
    assert all(400 <= case.status < 500 for case in CASES)
    for kind in (
        "type",
        "missing",
        "extra",
        "number",
        "string",
        "control",
        "formula",
        "sql",
        "encoding",
        "json",
        "duplicate",
        "content-type",
        "size",
        "auth",
        "token",
        "tenant",
        "cursor",
        "currency",
        "timezone",
        "ssrf",
        "path",
    ):
        assert by_kind[kind] >= 2, kind
    print(f"\nhostile-input catalogue: {len(CASES)} cases, by status {dict(sorted(by_status.items()))}")
