"""Request bodies are strict JSON sent as JSON; no redirect from the Host; answers that caches and browsers respect."""

from __future__ import annotations

import httpx
import pytest

from tests.api_support import INTERNAL, INTERNAL_HEADERS, PUBLIC, bearer, deduction_body, provision
from tests.conftest import TEST_PII_KEYS
from wabapool.bootstrap import create_app
from wabapool.config import Settings

COMPANY, OTHER = 101, 102
JSON = {"Content-Type": "application/json"}


def _body_routes() -> list[tuple[str, str]]:
    """(method, path) of every operation of the OpenAPI document that takes a request body, the ids filled in."""
    document = create_app(Settings(database_url="sqlite:///unused.db", pii_keys=TEST_PII_KEYS)).openapi()
    found = []
    for template, operations in document["paths"].items():
        path = template.replace("{company_id}", str(COMPANY)).replace("{waba_id}", "1001001")
        path = path.replace("{deduction_code}", "wa_marketing_id")
        found += [(method.upper(), path) for method, operation in operations.items() if "requestBody" in operation]
    return sorted(found)


BODY_ROUTES = _body_routes()


async def _spent(http: httpx.AsyncClient, company_id: int) -> int:
    info = (await http.get(f"{PUBLIC}/billings/info", headers=bearer(company_id))).json()
    return int(sum(w["spent_this_cycle"] for w in info["wabas"]))


async def test_a_duplicated_key_is_a_400_and_charges_neither_company(http: httpx.AsyncClient) -> None:
    await provision(http, COMPANY)
    await provision(http, OTHER, wabas=("2002002",))
    raw = (
        b'{"company_id": 101, "company_id": 102, "billing_code": "whatsapp", "deduction_code": "wa_marketing_id",'
        b' "unique_code": "dup-1", "quantity": 1, "extra_attrs": {"waba_id": "2002002"}}'
    )
    response = await http.post(
        f"{INTERNAL}/quota-managements/deduction", content=raw, headers={**INTERNAL_HEADERS, **JSON}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert response.headers["x-request-id"]
    assert (await _spent(http, COMPANY), await _spent(http, OTHER)) == (0, 0)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", None, "application/json; charset=latin-1"]
)
async def test_a_deduction_not_sent_as_json_is_a_415_and_not_applied(
    http: httpx.AsyncClient, content_type: str | None
) -> None:
    await provision(http, COMPANY)
    import json

    raw = json.dumps(deduction_body(COMPANY, "ct-1")).encode()
    headers = dict(INTERNAL_HEADERS)
    request = http.build_request("POST", f"{INTERNAL}/quota-managements/deduction", content=raw, headers=headers)
    if content_type is None:
        request.headers.pop("content-type", None)
    else:
        request.headers["content-type"] = content_type
    response = await http.send(request)
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert await _spent(http, COMPANY) == 0


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
async def test_every_endpoint_taking_a_body_refuses_one_that_is_not_json(
    http: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await http.request(
        method, path, content=b"a=1", headers={**INTERNAL_HEADERS, **bearer(COMPANY), "Content-Type": "text/plain"}
    )
    assert response.status_code == 415, response.text


def test_the_body_routes_are_found() -> None:
    paths = {path for _, path in BODY_ROUTES}
    assert f"{INTERNAL}/quota-managements/deduction" in paths and f"{PUBLIC}/billing_preferences" in paths


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", f"{INTERNAL}/quota-managements/deduction/"), ("GET", f"{PUBLIC}/billings/info/"), ("GET", "/healthz/")],
)
async def test_a_trailing_slash_is_a_404_never_a_redirect_to_the_requests_host(
    http: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await http.request(
        method, path, headers={**INTERNAL_HEADERS, **bearer(COMPANY), "Host": "evil.example"}, json={}
    )
    assert response.status_code == 404 and "location" not in response.headers
    assert response.json()["error"]["code"] == "not_found"


async def test_api_answers_are_never_cached_nor_sniffed(http: httpx.AsyncClient) -> None:
    await provision(http, COMPANY)
    for path in ("/billings/info", "/mcc_logs", "/download_broadcast_deduction", "/nope"):
        response = await http.get(f"{PUBLIC}{path}", headers=bearer(COMPANY))
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["x-content-type-options"] == "nosniff", path


async def test_the_page_cannot_be_framed(http: httpx.AsyncClient) -> None:
    response = await http.get("/package-usage")
    assert response.status_code == 200, "the page is built by scripts/install.sh"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
