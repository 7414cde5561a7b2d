"""The page's spending controls in Chromium against `wabapool serve` on PostgreSQL: a v2 company's per-WABA
balances, an owner setting an alert, a supervisor seeing the settings read-only; no console error on load."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.page_support import Server, axe_violations, issue, plain, rupiah, screenshot, start_serve
from tests.services import prepare_postgres

pytestmark = pytest.mark.postgres

FIGURES_TABLE = "Spend per WABA this cycle, daily spend and own balances"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = prepare_postgres()
    served = start_serve(tmp_path_factory.mktemp("alerts"), DATABASE_URL=url)
    yield served
    served.stop()


def _company(server: Server, *, version: str = "v3", **settings: Any) -> tuple[int, tuple[str, str]]:
    """A fresh company (ids unique per run) with two WABAs and a price; `settings` go to provisioning."""
    company_id = random.randint(10**8, 10**9)
    wabas = (f"{company_id}01", f"{company_id}02")
    package = {"allowance": 100_000, "postpaid_limit": 0, "cycle_anchor_day": 1, "threshold_percent": None}
    with server.internal() as internal:
        body = {"billing_version": version, "currency": "IDR", "timezone": "Asia/Jakarta", "package": package}
        response = internal.put(f"/companies/{company_id}", json={**body, **settings})
        assert response.status_code == 200, response.text
        for index, waba_id in enumerate(wabas):
            response = internal.put(f"/companies/{company_id}/wabas/{waba_id}", json={"name": f"WABA {'AB'[index]}"})
            assert response.status_code == 200, response.text
        price = {"unit_price": 1_000, "company_id": company_id, "effective_from": "2025-07-01T00:00:00Z"}
        assert internal.put("/price-list/wa_marketing_id", json=price).status_code == 200
    return company_id, wabas


def _deduct(server: Server, company_id: int, waba_id: str, code: str, quantity: int) -> None:
    body = {
        "company_id": company_id,
        "billing_code": "whatsapp",
        "deduction_code": "wa_marketing_id",
        "unique_code": code,
        "quantity": quantity,
        "extra_attrs": {"waba_id": waba_id},
    }
    with server.internal() as internal:
        response = internal.post("/quota-managements/deduction", json=body)
        assert response.status_code == 200, response.text


def _open(page: Any, server: Server, token: str) -> list[str]:
    """Open the page; returns what the console said in error, and every failed or 4xx/5xx request, while loading."""
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on(
        "response",
        lambda response: problems.append(f"{response.status} {response.url}") if response.status >= 400 else None,
    )
    page.on("requestfailed", lambda request: problems.append(f"failed {request.url}"))
    page.goto(f"{server.base}/package-usage#token={token}")
    expect(page.get_by_test_id("balance-total")).to_contain_text("Rp")
    expect(page.get_by_role("heading", name="Balance alerts and auto-recharge")).to_be_visible()
    page.wait_for_load_state("networkidle")
    return problems


def test_a_v2_company_shows_each_wabas_own_balance(page: Any, server: Server) -> None:
    company_id, wabas = _company(server, version="v2")
    with server.internal() as internal:
        body = {"company_id": company_id, "amount": 25_000, "payment_reference": "pay-a", "waba_id": wabas[0]}
        assert internal.post("/quota-managements/top-up", json=body).status_code == 200
    _deduct(server, company_id, wabas[1], "m1", 30)
    token = issue(company_id)
    assert _open(page, server, token) == []
    with server.api(token) as api:
        info = api.get("/billings/info").json()
    table = page.get_by_role("table", name=FIGURES_TABLE)
    for waba in info["wabas"]:
        row = table.locator(f"[data-waba='{waba['waba_id']}']")
        expect(row).to_contain_text(waba["name"])
        own = plain(row.locator("td").last.inner_text())
        assert own.startswith(rupiah(waba["balance"]["total"]))
        assert f"available {rupiah(waba['balance']['available'])}" in own
    # 100,000 + 25,000 for A; 100,000 - 30,000 for B: each its own.
    assert [w["balance"]["total"] for w in info["wabas"]] == [125_000, 70_000]
    assert axe_violations(page) == []
    screenshot(page, "v2-per-waba-balances")


def test_an_owner_sets_an_alert_and_sees_it_after_a_reload(page: Any, server: Server) -> None:
    company_id, _ = _company(server)
    token = issue(company_id)
    assert _open(page, server, token) == []
    page.get_by_role("button", name="Add alert").click()
    page.get_by_role("combobox", name="Alert 1 type").select_option("amount")
    page.get_by_role("textbox", name="Alert 1 value").fill("250")
    page.get_by_role("checkbox", name="Request a top-up automatically").check()
    page.get_by_role("textbox", name="When available falls below").fill("300")
    page.get_by_role("textbox", name="Top-up amount").fill("5000")
    page.get_by_role("button", name="Save alerts").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    with server.api(token) as api:
        stored = api.get("/balance_alerts").json()
    assert stored["alerts"] == [{"kind": "amount", "value": 25_000}]
    assert stored["auto_recharge"] == {"below": 30_000, "amount": 500_000, "max_per_cycle": 3}
    page.reload()
    expect(page.get_by_role("textbox", name="Alert 1 value")).to_have_value("250")
    expect(page.get_by_role("textbox", name="Top-up amount")).to_have_value("5000")
    assert axe_violations(page) == []
    screenshot(page, "alerts-owner-edit")


def test_a_supervisor_sees_the_settings_and_the_open_request_read_only(page: Any, server: Server) -> None:
    settings = {
        "balance_alerts": [{"kind": "percent", "value": 20}],
        "auto_recharge": {"below": 50_000, "amount": 50_000_000, "max_per_cycle": 3},
    }
    company_id, wabas = _company(server, **settings)
    _deduct(server, company_id, wabas[0], "big", 60)  # 40,000 left, under 50,000: a request
    token = issue(company_id, "supervisor")
    assert _open(page, server, token) == []
    panel = page.get_by_test_id("alerts-read-only")
    expect(panel).to_contain_text("When 20% of this cycle's funds are left")
    expect(panel).to_contain_text("Only owners and admins can change these settings.")
    assert "Request a top-up of Rp 500.000 when available falls below Rp 500" in plain(panel.inner_text())
    expect(page.get_by_role("button", name="Save alerts")).to_have_count(0)
    expect(page.get_by_test_id("open-request")).to_contain_text("Top-up of")
    assert "Rp 500.000 requested at" in plain(page.get_by_test_id("open-request").inner_text())
    assert axe_violations(page) == []
    screenshot(page, "alerts-supervisor-read-only")
