"""The page's server side: the build served with the right cache headers, the analytics sink, the page's fields."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.api_support import INTERNAL, INTERNAL_HEADERS, PUBLIC, api_client, bearer, deduction_body, provision
from tests.api_support import settings_for as settings
from wabapool.api.web import ASSETS_CACHE_CONTROL, install_page
from wabapool.metrics import ANALYTICS_EVENTS
from wabapool.storage.migrate import upgrade

TOOLTIP_EVENT = "billing_shared_balance_tooltip_opened"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    async with api_client(settings(url)) as (http, _):
        upgrade(url)
        await provision(http, 1, wabas=("111", "222"))
        yield http


def _built_page(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text('<!doctype html><script src="/assets/index-abc123.js"></script>')
    (dist / "assets" / "index-abc123.js").write_text("console.log('page')")
    return dist


async def _page_client(dist: Path) -> httpx.AsyncClient:
    app = FastAPI()
    install_page(app, dist)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wabapool.test")


@pytest.mark.parametrize("path", ["/", "/package-usage"])
async def test_page_html_is_served_uncached_at_both_addresses(tmp_path: Path, path: str) -> None:
    async with await _page_client(_built_page(tmp_path)) as http:
        response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "no-store" in response.headers["cache-control"]
    assert "/assets/index-abc123.js" in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]


async def test_hashed_assets_are_cached_for_a_year_as_immutable(tmp_path: Path) -> None:
    async with await _page_client(_built_page(tmp_path)) as http:
        asset = await http.get("/assets/index-abc123.js")
        missing = await http.get("/assets/index-gone.js")
    assert asset.status_code == 200
    assert asset.headers["cache-control"] == ASSETS_CACHE_CONTROL
    assert missing.status_code == 404
    assert "immutable" not in missing.headers.get("cache-control", "")


async def test_an_unbuilt_page_answers_404_in_the_envelope(tmp_path: Path) -> None:
    async with await _page_client(tmp_path / "never-built") as http:
        response = await http.get("/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def _count(billing_version: str, trigger: str) -> float:
    return ANALYTICS_EVENTS.labels(name=TOOLTIP_EVENT, billing_version=billing_version, trigger=trigger)._value.get()


@pytest.mark.parametrize("role", ["owner", "member"])
async def test_an_allowed_analytics_event_is_accepted_and_counted(client: httpx.AsyncClient, role: str) -> None:
    before = _count("v3", "focus")
    response = await client.post(
        f"{PUBLIC}/analytics/events",
        json={"name": TOOLTIP_EVENT, "properties": {"billing_version": "v3", "trigger": "focus"}},
        headers=bearer(1, role),
    )
    assert response.status_code == 202, response.text
    assert _count("v3", "focus") == before + 1
    metrics = (await client.get("/metrics")).text
    assert f'wabapool_analytics_events_total{{billing_version="v3",name="{TOOLTIP_EVENT}",trigger="focus"}}' in metrics


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "page_viewed", "properties": {}}, "unknown_event"),
        ({"name": TOOLTIP_EVENT, "properties": {"billing_version": "v3", "trigger": "swipe"}}, "validation_error"),
        ({"name": TOOLTIP_EVENT, "properties": {"billing_version": "v3"}}, "validation_error"),
        (
            {"name": TOOLTIP_EVENT, "properties": {"billing_version": "v3", "trigger": "click", "email": "a@b.c"}},
            "validation_error",
        ),
        ({"properties": {}}, "validation_error"),
    ],
)
async def test_analytics_events_outside_the_allow_list_are_400_and_not_counted(
    client: httpx.AsyncClient, body: dict[str, object], code: str
) -> None:
    before = _count("v3", "click")
    response = await client.post(f"{PUBLIC}/analytics/events", json=body, headers=bearer(1))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert _count("v3", "click") == before


async def test_analytics_needs_a_bearer_token(client: httpx.AsyncClient) -> None:
    body = {"name": TOOLTIP_EVENT, "properties": {"billing_version": "v3", "trigger": "click"}}
    response = await client.post(f"{PUBLIC}/analytics/events", json=body)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_billing_info_tells_the_page_the_company_timezone_and_the_cycle_funds(client: httpx.AsyncClient) -> None:
    body = (await client.get(f"{PUBLIC}/billings/info", headers=bearer(1))).json()
    assert body["timezone"] == "Asia/Jakarta"
    assert body["funded_this_cycle"] == 100_000


async def test_csv_download_follows_the_category_filter(client: httpx.AsyncClient) -> None:
    await client.put(f"{INTERNAL}/price-list/wa_utility_id", json={"unit_price": 10}, headers=INTERNAL_HEADERS)
    marketing = deduction_body(1, "m-1", waba_id="111", category="marketing")
    utility = deduction_body(1, "u-1", waba_id="111", category="utility") | {"deduction_code": "wa_utility_id"}
    for body in (marketing, utility):
        response = await client.post(f"{INTERNAL}/quota-managements/deduction", json=body, headers=INTERNAL_HEADERS)
        assert response.status_code == 200, response.text
    everything = await client.get(f"{PUBLIC}/download_broadcast_deduction", headers=bearer(1))
    only = await client.get(f"{PUBLIC}/download_broadcast_deduction", params={"category": "utility"}, headers=bearer(1))
    assert len(everything.text.splitlines()) == 3
    rows = list(csv.DictReader(io.StringIO(only.text.lstrip("\ufeff"))))
    assert [(row["Category"], row["Deduction Code"]) for row in rows] == [("utility", "wa_utility_id")]
