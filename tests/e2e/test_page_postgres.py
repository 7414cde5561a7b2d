"""The Package Usage page in Chromium against `wabapool serve` on PostgreSQL (production settings, no demo)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.page_support import Server, axe_violations, issue, plain, rupiah, screenshot, start_serve
from tests.services import prepare_postgres

pytestmark = pytest.mark.postgres

WABAS = ("310000000000001", "310000000000002")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = prepare_postgres()
    served = start_serve(tmp_path_factory.mktemp("pg"), DATABASE_URL=url)
    yield served
    served.stop()


def _company(server: Server, *, allowance: int = 100_000, version: str = "v3") -> tuple[int, tuple[str, str]]:
    """A fresh company (ids unique per run: the database outlives the test) with two WABAs and a price."""
    company_id = random.randint(10**8, 10**9)
    wabas = (f"{company_id}01", f"{company_id}02")
    package = {"allowance": allowance, "postpaid_limit": 50_000, "cycle_anchor_day": 1, "threshold_percent": None}
    with server.internal() as internal:
        body = {"billing_version": version, "currency": "IDR", "timezone": "Asia/Jakarta", "package": package}
        response = internal.put(f"/companies/{company_id}", json=body)
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
        "extra_attrs": {
            "waba_id": waba_id,
            "broadcast_id": f"bc-{code}",
            "category": "marketing",
            "customer_name": "Budi Santoso",
            "phone_number": "+6281234567890",
        },
    }
    with server.internal() as internal:
        response = internal.post("/quota-managements/deduction", json=body)
        assert response.status_code == 200, response.text


def _open(page: Any, server: Server, token: str) -> None:
    page.goto(f"{server.base}/package-usage#token={token}")
    expect(page.get_by_test_id("balance-total")).to_contain_text("Rp")


def _total(server: Server, token: str) -> int:
    with server.api(token) as api:
        return int(api.get("/billings/info").json()["balance"]["total"])


def test_the_banner_follows_the_pool_from_healthy_to_low_to_below_zero(page: Any, server: Server) -> None:
    company_id, wabas = _company(server)
    token = issue(company_id)
    _open(page, server, token)
    assert plain(page.get_by_test_id("balance-total").inner_text()) == rupiah(_total(server, token)) == "Rp 1.000"
    expect(page.get_by_text("above the 40% low-balance mark")).to_be_visible()
    assert page.get_by_role("status", name="low").count() == 0 and page.get_by_role("alert").count() == 0

    _deduct(server, company_id, wabas[0], "push-low", 61)  # 39% of the cycle's funds left: at or under 40%
    page.reload()
    expect(page.get_by_role("status", name="low")).to_be_visible()
    expect(page.get_by_role("status", name="low")).to_contain_text("39% of this cycle's funds left")
    assert page.get_by_role("alert").count() == 0
    assert plain(page.get_by_test_id("balance-total").inner_text()) == rupiah(_total(server, token))
    assert axe_violations(page) == []
    screenshot(page, "banner-low-postgres")

    _deduct(server, company_id, wabas[1], "push-below-zero", 60)  # total 39,000 - 60,000: into postpaid
    page.reload()
    alert = page.get_by_role("alert", name="below zero")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("(Rp 210 of Rp 500)")
    assert page.get_by_role("status", name="low").count() == 0  # below zero takes precedence
    assert plain(page.get_by_test_id("balance-total").inner_text()) == rupiah(_total(server, token)) == "\u2212Rp 210"
    assert axe_violations(page) == []
    screenshot(page, "banner-below-zero-postgres")


def _download(page: Any, tmp_path: Path, name: str) -> list[str]:
    with page.expect_download() as download:
        page.get_by_role("button", name="CSV").click()
    target = tmp_path / name
    download.value.save_as(target)
    return target.read_text(encoding="utf-8").splitlines()


def test_the_waba_id_column_is_in_the_table_and_the_csv_exactly_when_the_preference_is_on(
    page: Any, server: Server, tmp_path: Path
) -> None:
    company_id, wabas = _company(server, allowance=10_000_000)
    for index in range(3):
        _deduct(server, company_id, wabas[index % 2], f"csv-{index}", 1)
    token = issue(company_id)
    table = page.get_by_role("table", name="deduction")

    _open(page, server, token)
    expect(table.locator("tbody tr")).to_have_count(3)
    assert "WABA ID" not in table.locator("thead th").all_inner_texts()
    lines = _download(page, tmp_path, "off.csv")
    assert "WABA ID" not in lines[0].split(",") and len(lines) == 4

    with server.api(token) as api:
        assert api.put("/billing_preferences", json={"show_waba_id": True}).json() == {"show_waba_id": True}
    page.reload()
    expect(table.locator("thead th", has_text="WABA ID")).to_be_visible()
    assert wabas[0] in table.locator("tbody").inner_text()
    lines = _download(page, tmp_path, "on.csv")
    header = lines[0].split(",")
    assert "WABA ID" in header and len(lines) == 4
    column = header.index("WABA ID")
    assert sorted(line.split(",")[column] for line in lines[1:]) == sorted([wabas[0], wabas[1], wabas[0]])

    # The CSV is the current filter: one WABA.
    page.get_by_role("combobox", name="WABA").select_option(label="WABA B")
    expect(table.locator("tbody tr")).to_have_count(1)
    lines = _download(page, tmp_path, "one-waba.csv")
    assert [line.split(",")[column] for line in lines[1:]] == [wabas[1]]


def test_a_supervisor_sees_personal_data_masked_as_the_api_gives_it(page: Any, server: Server) -> None:
    company_id, wabas = _company(server)
    _deduct(server, company_id, wabas[0], "masked-1", 1)
    token = issue(company_id, "supervisor")
    _open(page, server, token)
    with server.api(token) as api:
        row = api.get("/mcc_logs").json()["data"][0]
    assert "Santoso" not in row["customer_name"] and "4567890" not in row["phone_number"]
    cells = page.get_by_role("table", name="deduction").locator("tbody tr").first.inner_text()
    assert row["customer_name"] in cells and row["phone_number"] in cells


def test_a_v2_company_gets_no_shared_pool_tooltip(page: Any, server: Server) -> None:
    company_id, _ = _company(server, version="v2")
    token = issue(company_id)
    with server.api(token) as api:
        assert api.get("/billings/info").json()["billing_version"] == "v2"
    _open(page, server, token)
    assert page.get_by_role("button", name="Shared balance details").count() == 0
    assert page.get_by_role("tooltip").count() == 0
    expect(page.get_by_role("heading", name="Balance", exact=True)).to_be_visible()
    assert plain(page.get_by_test_id("balance-total").inner_text()) == rupiah(_total(server, token))
    assert axe_violations(page) == []
    screenshot(page, "v2-company")
