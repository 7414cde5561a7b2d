"""Who may call what: roles, tenancy, tokens, API keys, and bad input that writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from tests.api_support import (
    API_KEY,
    INTERNAL,
    INTERNAL_HEADERS,
    JWT_SECRET,
    PUBLIC,
    api_client,
    bearer,
    deduction_body,
    provision,
    settings_for,
)
from wabapool.service.reconcile import reconcile

ROLES = ("owner", "admin", "supervisor", "agent", "member")
# SPEC section 5, the role table.
ALLOWED = {
    ("GET", "/billings/info"): {"owner", "admin", "supervisor", "agent", "member"},
    ("GET", "/mcc_logs"): {"owner", "admin", "supervisor"},
    ("GET", "/download_broadcast_deduction"): {"owner", "admin", "supervisor"},
    ("GET", "/billing_preferences"): {"owner", "admin", "supervisor"},
    ("PUT", "/billing_preferences"): {"owner", "admin"},
}


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    async with api_client(settings_for(url)) as (http, context):
        from wabapool.storage.migrate import upgrade

        upgrade(url)
        await provision(http, 1, wabas=("111",))
        await provision(http, 2, wabas=("222",))
        http.context = context  # type: ignore[attr-defined]
        yield http


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path"), list(ALLOWED))
async def test_each_role_gets_exactly_the_public_endpoints_the_table_allows(
    client: httpx.AsyncClient, role: str, method: str, path: str
) -> None:
    body = {"show_waba_id": False} if method == "PUT" else None
    response = await client.request(method, PUBLIC + path, json=body, headers=bearer(1, role))
    expected_ok = role in ALLOWED[(method, path)]
    assert (response.status_code == 200) is expected_ok, (role, path, response.status_code, response.text)
    if not expected_ok:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


async def test_a_company_cannot_see_or_filter_by_another_companys_waba(client: httpx.AsyncClient) -> None:
    await client.post(
        f"{INTERNAL}/quota-managements/deduction",
        json=deduction_body(2, "secret-msg", waba_id="222"),
        headers=INTERNAL_HEADERS,
    )
    theirs = await client.get(f"{PUBLIC}/mcc_logs", params={"waba_id": "222"}, headers=bearer(1))
    missing = await client.get(f"{PUBLIC}/mcc_logs", params={"waba_id": "999"}, headers=bearer(1))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["code"] == missing.json()["error"]["code"]
    assert theirs.json()["error"]["message"] == missing.json()["error"]["message"]
    mine = (await client.get(f"{PUBLIC}/mcc_logs", headers=bearer(1))).json()
    assert mine["data"] == []
    csv_rows = (await client.get(f"{PUBLIC}/download_broadcast_deduction", headers=bearer(1))).text.splitlines()
    assert len(csv_rows) == 1
    info = (await client.get(f"{PUBLIC}/billings/info", headers=bearer(1))).json()
    assert [w["waba_id"] for w in info["wabas"]] == ["111"]


async def test_internal_deduction_against_another_companys_waba_is_404_like_a_missing_one(
    client: httpx.AsyncClient,
) -> None:
    theirs = await client.post(
        f"{INTERNAL}/quota-managements/deduction", json=deduction_body(1, "x1", waba_id="222"), headers=INTERNAL_HEADERS
    )
    missing = await client.post(
        f"{INTERNAL}/quota-managements/deduction", json=deduction_body(1, "x2", waba_id="999"), headers=INTERNAL_HEADERS
    )
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["code"] == missing.json()["error"]["code"] == "unknown_waba"


async def test_preferences_written_by_one_company_do_not_change_another(client: httpx.AsyncClient) -> None:
    await client.put(f"{PUBLIC}/billing_preferences", json={"show_waba_id": True}, headers=bearer(1))
    assert (await client.get(f"{PUBLIC}/billing_preferences", headers=bearer(2))).json() == {"show_waba_id": False}


def _token(claims: dict, *, key: str = JWT_SECRET, algorithm: str = "HS256") -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm=algorithm)}"}


def _claims(**overrides: object) -> dict:
    now = datetime.now(UTC)
    return {"company_id": 1, "role": "owner", "exp": now + timedelta(minutes=5), "nbf": now, **overrides}


def _alg_none_token() -> dict[str, str]:
    import base64
    import json

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value, default=str).encode()).decode().rstrip("=")

    claims = {"company_id": 1, "role": "owner", "exp": int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())}
    return {"Authorization": f"Bearer {part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer not-a-jwt"}, id="garbage"),
        pytest.param(_token(_claims(), key="another-secret-of-enough-length-000000"), id="forged"),
        pytest.param(_token(_claims(exp=datetime.now(UTC) - timedelta(seconds=5))), id="expired"),
        pytest.param(_token(_claims(nbf=datetime.now(UTC) + timedelta(hours=1))), id="not-yet-valid"),
        pytest.param(_alg_none_token(), id="alg-none"),
        pytest.param(_token(_claims(), algorithm="HS512"), id="unknown-algorithm"),
        pytest.param(_token(_claims(role="root")), id="unknown-role"),
        pytest.param({"X-Api-Key": API_KEY}, id="api-key-on-public"),
    ],
)
async def test_bad_tokens_are_refused_with_401(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get(f"{PUBLIC}/billings/info", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_wrong_audience_is_refused_when_an_audience_is_configured(tmp_path) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'aud.db'}", jwt_audience="wabapool")
    async with api_client(settings) as (http, _):
        wrong = await http.get(f"{PUBLIC}/billings/info", headers=bearer(1, audience="someone-else"))
        assert wrong.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Api-Key": "wrong-key-0123456789abcdef"}, {"Authorization": "Bearer " + API_KEY}],
    ids=["missing", "wrong", "bearer-instead"],
)
async def test_internal_endpoints_take_only_a_valid_api_key(client: httpx.AsyncClient, headers: dict) -> None:
    response = await client.post(
        f"{INTERNAL}/quota-managements/deduction", json=deduction_body(1, "k", waba_id="111"), headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_the_gateway_path_serves_the_same_internal_api(client: httpx.AsyncClient) -> None:
    response = await client.get("/internal/qontak/billing/v1/quota-managements/1/balance", headers=INTERNAL_HEADERS)
    assert response.status_code == 200
    assert response.json()["total"] == 100_000


INVALID = (400, "validation_error")
BAD_BODIES = [
    pytest.param(b"{not json", INVALID, id="not-json"),
    pytest.param({**deduction_body(1, "b1", waba_id="111"), "quantity": "1"}, INVALID, id="quantity-string"),
    pytest.param({**deduction_body(1, "b2", waba_id="111"), "quantity": 1.5}, INVALID, id="quantity-float"),
    pytest.param({**deduction_body(1, "b3", waba_id="111"), "quantity": -1}, INVALID, id="quantity-negative"),
    pytest.param({**deduction_body(1, "b4", waba_id="111"), "quantity": 0}, INVALID, id="quantity-zero"),
    pytest.param({**deduction_body(1, "b5", waba_id="111"), "quantity": 10**30}, INVALID, id="quantity-huge"),
    pytest.param({**deduction_body(1, "", waba_id="111")}, INVALID, id="unique-code-empty"),
    pytest.param({**deduction_body(1, "x" * 129)}, INVALID, id="unique-code-too-long"),
    pytest.param({**deduction_body(1, "b6", waba_id="111"), "surprise": 1}, INVALID, id="unknown-field"),
    pytest.param({**deduction_body(1, "b7", waba_id="111"), "extra_attrs": {}}, INVALID, id="waba-missing"),
    pytest.param(
        {**deduction_body(1, "b8", waba_id="111"), "deduction_code": "wa_nope"},
        (400, "unknown_deduction_code"),
        id="unknown-deduction-code",
    ),
    pytest.param(
        {**deduction_body(1, "b9", waba_id="111"), "company_id": 424242}, (404, "unknown_company"), id="unknown-company"
    ),
    pytest.param(
        {**deduction_body(1, "b10", waba_id="111"), "quantity": 10**6}, (400, "quota_exceeded"), id="quota-exceeded"
    ),
]


@pytest.mark.parametrize(("body", "refusal"), BAD_BODIES)
async def test_bad_deductions_get_their_code_in_the_envelope_and_write_nothing(
    client: httpx.AsyncClient, body, refusal: tuple[int, str]
) -> None:
    kwargs = (
        {"content": body, "headers": {**INTERNAL_HEADERS, "Content-Type": "application/json"}}
        if isinstance(body, bytes)
        else {"json": body, "headers": INTERNAL_HEADERS}
    )
    before = (await client.get(f"{INTERNAL}/quota-managements/1/balance", headers=INTERNAL_HEADERS)).json()
    response = await client.post(f"{INTERNAL}/quota-managements/deduction", **kwargs)
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == refusal, response.text
    assert set(error) == {"code", "message", "details"} and error["message"]
    after = (await client.get(f"{INTERNAL}/quota-managements/1/balance", headers=INTERNAL_HEADERS)).json()
    assert after == before
    logs = (await client.get(f"{PUBLIC}/mcc_logs", headers=bearer(1))).json()
    assert logs["data"] == []
    report = await reconcile(client.context.service.database)  # type: ignore[attr-defined]
    assert report.ok and report.checks["deductions"] == 0


@pytest.mark.parametrize(
    ("path", "body", "refusal"),
    [
        ("/quota-managements/top-up", {"company_id": 1, "amount": -5, "payment_reference": "p"}, INVALID),
        ("/quota-managements/top-up", {"company_id": 1, "amount": 10.5, "payment_reference": "p"}, INVALID),
        (
            "/quota-managements/top-up",
            {"company_id": 1, "amount": 10**20, "payment_reference": "p"},
            (400, "amount_too_large"),
        ),
        ("/quota-managements/top-up", {"company_id": 1, "amount": 5}, INVALID),
        (
            "/quota-managements/refund",
            {"company_id": 1, "unique_code": "never-sent", "refund_code": "r"},
            (404, "unknown_deduction"),
        ),
        ("/quota-managements/settle-postpaid", {"company_id": 1, "amount": 0, "payment_reference": "p"}, INVALID),
    ],
)
async def test_bad_payments_and_refunds_are_refused_with_their_code_and_write_nothing(
    client: httpx.AsyncClient, path: str, body: dict, refusal: tuple[int, str]
) -> None:
    before = (await client.get(f"{INTERNAL}/quota-managements/1/balance", headers=INTERNAL_HEADERS)).json()
    response = await client.post(INTERNAL + path, json=body, headers=INTERNAL_HEADERS)
    assert (response.status_code, response.json()["error"]["code"]) == refusal, response.text
    assert (await client.get(f"{INTERNAL}/quota-managements/1/balance", headers=INTERNAL_HEADERS)).json() == before


async def test_a_batch_past_1000_items_is_413(client: httpx.AsyncClient) -> None:
    items = [deduction_body(1, f"big-{i}", waba_id="111") for i in range(1001)]
    response = await client.post(
        f"{INTERNAL}/quota-managements/deductions", json={"items": items}, headers=INTERNAL_HEADERS
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_a_body_past_the_byte_limit_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{INTERNAL}/quota-managements/deduction",
        content=b"x" * (3 * 1024 * 1024),
        headers={**INTERNAL_HEADERS, "Content-Type": "application/json"},
    )
    assert response.status_code == 413


async def test_batch_keeps_request_order_and_a_rejected_item_does_not_fail_its_neighbours(
    client: httpx.AsyncClient,
) -> None:
    items = [
        deduction_body(1, "ok-1", waba_id="111"),
        deduction_body(1, "bad", waba_id="222"),
        deduction_body(1, "ok-2", waba_id="111"),
        deduction_body(1, "ok-1", waba_id="111"),
    ]
    response = await client.post(
        f"{INTERNAL}/quota-managements/deductions", json={"items": items}, headers=INTERNAL_HEADERS
    )
    results = response.json()["results"]
    assert [(r["unique_code"], r["status"]) for r in results] == [
        ("ok-1", "applied"),
        ("bad", "rejected"),
        ("ok-2", "applied"),
        ("ok-1", "replayed"),
    ]
    assert results[1]["error"]["code"] == "unknown_waba"
    assert results[3]["deduction_id"] == results[0]["deduction_id"]
