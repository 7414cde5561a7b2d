"""Spending controls in Chromium against `wabapool serve --demo`: a cap set on the page, then a refusal seen."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.api_support import deduction_body
from tests.e2e.page_support import Server, axe_violations, issue, plain, start_serve

SALES = ("102290129340398", "Toko Sepatu Nusantara — Sales")
PROMO = ("114578203396121", "Toko Sepatu Nusantara — Promo")
DEMO_COMPANY_ID = 10001


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_serve(tmp_path_factory.mktemp("caps-demo"), "--demo")
    assert server.page_url and server.token, server.output.read_text()[-2000:]
    yield server
    server.stop()


def open_page(page: Any, url: str) -> Any:
    page.goto(url)
    section = page.get_by_role("region", name="Spending controls")
    expect(section.get_by_role("progressbar").first).to_be_visible()
    return section


def alerts(page: Any) -> Any:
    return page.get_by_role("table", name="Alert history")


def test_the_demo_shows_promos_nearly_full_marketing_cap_its_warning_and_its_refusal(page: Any, demo: Server) -> None:
    assert demo.page_url
    section = open_page(page, demo.page_url)
    promo = section.get_by_role("progressbar", name=f"{PROMO[1]}: spend against its cap this cycle")
    expect(promo).to_be_visible()
    row = section.locator(f'[data-waba="{PROMO[0]}"]')
    expect(row).to_contain_text("Marketing only")
    expect(row).to_contain_text("warning mark")
    expect(alerts(page)).to_contain_text(f"WABA {PROMO[0]} passed")
    expect(alerts(page)).to_contain_text(f"WABA {PROMO[0]} reached its spending cap")
    assert axe_violations(page) == []


def test_an_owner_sets_a_cap_with_a_confirmation_and_then_sees_a_refusal_appear(page: Any, demo: Server) -> None:
    assert demo.page_url
    section = open_page(page, demo.page_url)
    section.get_by_role("button", name=f"Set the spending cap of {SALES[1]}").click()
    section.get_by_label("Cap per cycle (IDR)").fill("1")
    section.get_by_label("Marketing").check()
    section.get_by_role("button", name="Save").click()
    confirmation = section.get_by_role("group", name="Confirm the change")
    expect(confirmation).to_contain_text(f"Cap {SALES[1]} at Rp")
    with demo.api() as api:  # nothing is sent before the confirmation
        before = next(w for w in api.get("/billings/info").json()["wabas"] if w["waba_id"] == SALES[0])
    assert before["spend_cap"] is None
    confirmation.get_by_role("button", name="Confirm").click()
    row = section.locator(f'[data-waba="{SALES[0]}"]')
    expect(row).to_contain_text("Cap reached")
    assert "Rp 1 this cycle" in plain(row.inner_text())
    with demo.api() as api:
        after = next(w for w in api.get("/billings/info").json()["wabas"] if w["waba_id"] == SALES[0])
    assert after["spend_cap"] == {"amount": 100, "categories": ["marketing"], "warn_percent": 80}

    with demo.internal() as internal:
        refused = internal.post(
            "/quota-managements/deduction",
            # The demo's prices are Indonesia's (+62): the number says which market prices it.
            json=deduction_body(
                DEMO_COMPANY_ID,
                "wamid.e2e.capped",
                waba_id=SALES[0],
                category="marketing",
                phone_number="+6281234567890",
            ),
        )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "waba_cap_exceeded"
    page.get_by_role("button", name="Refresh").click()
    expect(alerts(page)).to_contain_text(f"WABA {SALES[0]} reached its spending cap")

    section.get_by_role("button", name=f"Remove the spending cap of {SALES[1]}").click()
    section.get_by_role("group", name="Confirm the change").get_by_role("button", name="Confirm").click()
    expect(row).to_contain_text("No cap")


def test_a_supervisor_sees_the_caps_read_only_and_an_agent_does_not_see_them(page: Any, demo: Server) -> None:
    supervisor = f"{demo.base}/package-usage#token={issue(DEMO_COMPANY_ID, 'supervisor')}"
    section = open_page(page, supervisor)
    expect(section).to_contain_text("Read only")
    assert section.get_by_role("button").count() == 0
    page.goto("about:blank")  # a new fragment alone would not load the page again
    page.goto(f"{demo.base}/package-usage#token={issue(DEMO_COMPANY_ID, 'agent')}")
    expect(page.get_by_role("heading", name="Shared balance")).to_be_visible()
    expect(page.get_by_test_id("balance-total")).to_contain_text("Rp")
    assert page.get_by_role("region", name="Spending controls").count() == 0
