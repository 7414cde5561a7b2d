"""The Package Usage page in Chromium against a real `wabapool serve --demo` (SQLite, seeded history)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Response, Route, expect

from tests.e2e.page_support import (
    ANALYTICS_PATH,
    PUBLIC,
    TOOLTIP_EVENT,
    Server,
    axe_violations,
    no_sideways_scroll,
    plain,
    rupiah,
    screenshot,
    start_serve,
)

PROMO = ("114578203396121", "Toko Sepatu Nusantara — Promo")
TRIGGERS = ("hover", "focus", "click")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_serve(tmp_path_factory.mktemp("demo"), "--demo")
    assert server.page_url and server.token, server.output.read_text()[-2000:]
    yield server
    server.stop()


def open_page(page: Any, demo: Server) -> None:
    assert demo.page_url
    page.goto(demo.page_url)
    expect(page.get_by_role("table", name="deduction").locator("tbody tr").first).to_contain_text("Rp")


def logs(page: Any) -> Any:
    return page.get_by_role("table", name="deduction")


def envelope(status: int, code: str, message: str) -> dict[str, Any]:
    return {
        "status": status,
        "content_type": "application/json",
        "body": json.dumps({"error": {"code": code, "message": message, "details": {}}}),
    }


def test_the_demo_link_signs_in_and_the_total_shown_is_the_apis(page: Any, demo: Server) -> None:
    open_page(page, demo)
    with demo.api() as api:
        info = api.get("/billings/info").json()
    assert plain(page.get_by_test_id("balance-total").inner_text()) == rupiah(info["balance"]["total"])
    assert (
        plain(page.get_by_test_id("balance-available").inner_text())
        == f"available {rupiah(info['balance']['available'])}"
    )
    assert "#token=" not in page.url  # the token leaves the address bar
    assert info["low_balance"] is True
    expect(page.get_by_role("status", name="low")).to_be_visible()
    assert page.get_by_role("alert").count() == 0
    assert axe_violations(page) == []
    screenshot(page, "success-desktop")


def is_analytics(response: Response) -> bool:
    return response.request.method == "POST" and response.url.endswith(ANALYTICS_PATH)


def test_the_tooltip_opens_by_hover_focus_and_click_closes_on_escape_and_reports_each_opening_once(
    page: Any, demo: Server
) -> None:
    sent: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request.post_data_json)
            if request.method == "POST" and request.url.endswith(ANALYTICS_PATH)
            else None
        ),
    )
    before = {t: demo.metric("wabapool_analytics_events_total", name=TOOLTIP_EVENT, trigger=t) for t in TRIGGERS}
    open_page(page, demo)
    trigger = page.get_by_role("button", name="Shared balance details")
    tooltip = page.get_by_role("tooltip")
    assert trigger.get_attribute("aria-describedby") == page.locator("[role=tooltip]").get_attribute("id")
    expect(tooltip).to_be_hidden()

    # Each opening's event is waited for by its answer from the server (so the server has counted it).
    with page.expect_response(is_analytics):
        trigger.hover()
    expect(tooltip).to_be_visible()
    expect(tooltip).to_contain_text("Toko Sepatu Nusantara — Support")
    assert axe_violations(page) == []
    screenshot(page, "tooltip-open")
    page.mouse.move(1200, 880)
    expect(tooltip).to_be_hidden()

    with page.expect_response(is_analytics):
        trigger.focus()
    expect(tooltip).to_be_visible()
    page.keyboard.press("Escape")
    expect(tooltip).to_be_hidden()

    with page.expect_response(is_analytics):
        trigger.click()
    expect(tooltip).to_be_visible()
    page.keyboard.press("Escape")
    expect(tooltip).to_be_hidden()

    # A barrier instead of a pause: a request the page makes after the last Escape. Any event a closing
    # (or a second report of an opening) sent was sent before it, so `sent` holds it once this is answered.
    with page.expect_response(lambda r: r.url.endswith(f"{PUBLIC}/billings/info")):
        page.get_by_role("button", name="Refresh").click()
    assert [event["properties"]["trigger"] for event in sent] == list(TRIGGERS)
    assert all(
        e == {"name": TOOLTIP_EVENT, "properties": {"billing_version": "v3", "trigger": e["properties"]["trigger"]}}
        for e in sent
    )
    after = {t: demo.metric("wabapool_analytics_events_total", name=TOOLTIP_EVENT, trigger=t) for t in TRIGGERS}
    assert {t: after[t] - before[t] for t in TRIGGERS} == {"hover": 1, "focus": 1, "click": 1}


def test_choosing_a_waba_filters_the_table_to_that_wabas_deductions(page: Any, demo: Server) -> None:
    open_page(page, demo)
    with page.expect_response(lambda r: "/mcc_logs" in r.url and f"waba_id={PROMO[0]}" in r.url):
        page.get_by_role("combobox", name="WABA").select_option(label=PROMO[1])
    expect(logs(page).locator("tbody tr").first).to_contain_text("-3")
    # The demo's broadcast ids end with the WABA's number (Promo is 3); the column is the second.
    shown = logs(page).locator("tbody tr td:nth-child(2)").all_inner_texts()
    with demo.api() as api:
        expected = api.get("/mcc_logs", params={"waba_id": PROMO[0], "limit": 50}).json()["data"]
    assert shown == [row["broadcast_id"] for row in expected]
    assert shown and all(broadcast.endswith("-3") for broadcast in shown)
    with page.expect_response(lambda r: "/mcc_logs" in r.url and "waba_id" not in r.url):
        page.get_by_role("combobox", name="WABA").select_option(label="All WABAs")
    expect(logs(page).locator("tbody tr td:nth-child(2)", has_text="-1").first).to_be_visible()


def test_load_more_follows_the_cursor(page: Any, demo: Server) -> None:
    open_page(page, demo)
    assert logs(page).locator("tbody tr").count() == 50
    page.get_by_role("button", name="Load more").click()
    expect(logs(page).locator("tbody tr")).to_have_count(100)
    with demo.api() as api:
        first = api.get("/mcc_logs", params={"limit": 50}).json()
        second = api.get("/mcc_logs", params={"limit": 50, "cursor": first["next_cursor"]}).json()
    broadcasts = logs(page).locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert broadcasts == [row["broadcast_id"] for row in first["data"] + second["data"]]
    # Broadcast ids repeat from row to row: the rows themselves (time, recipient, amount…) must not, so a
    # second page that repeated the first, or skipped ahead, would show here.
    assert len(set(logs(page).locator("tbody tr").all_inner_texts())) == 100
    assert {row["deduction_id"] for row in first["data"]}.isdisjoint(row["deduction_id"] for row in second["data"])


def test_the_usage_charts_have_tables_named_usage_with_the_apis_numbers(page: Any, demo: Server) -> None:
    open_page(page, demo)
    daily = page.get_by_role("table", name="Daily usage")
    per_waba = page.get_by_role("table", name="Usage per WABA")
    with demo.api() as api:
        usage = api.get("/usage").json()
    cells = daily.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert [plain(cell) for cell in cells] == [rupiah(day["amount"]) for day in usage["days"]]
    totals: dict[str, int] = {}
    for day in usage["days"]:
        for entry in day["by_waba"]:
            totals[entry["waba_id"]] = totals.get(entry["waba_id"], 0) + entry["amount"]
    shown = [plain(cell) for cell in per_waba.locator("tbody tr td:nth-child(2)").all_inner_texts()]
    assert shown == [rupiah(amount) for amount in sorted(totals.values(), reverse=True)]
    page.get_by_role("button", name="Show table").click()
    expect(page.get_by_role("table", name="Daily usage")).to_be_visible()
    assert axe_violations(page) == []
    screenshot(page, "usage-table-shown")


def test_the_top_up_dialog_and_the_banner_dismissal_for_the_session(page: Any, demo: Server) -> None:
    open_page(page, demo)
    page.get_by_role("button", name="Top up").click()
    dialog = page.get_by_role("dialog", name="Top up your balance")
    expect(dialog).to_be_visible()
    assert axe_violations(page) == []
    screenshot(page, "top-up-dialog")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Dismiss this message for this session").click()
    expect(page.get_by_role("status", name="low")).to_have_count(0)
    page.reload()
    expect(logs(page).locator("tbody tr").first).to_contain_text("Rp")
    expect(page.get_by_role("status", name="low")).to_have_count(0)


@pytest.mark.parametrize("width", [1280, 360])
def test_loading_state_is_skeletons_of_the_final_size_and_passes_axe(page: Any, demo: Server, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    held: list[Route] = []
    released = False

    def hold(route: Route) -> None:
        if released:
            route.continue_()
        else:
            held.append(route)

    page.route("**/api/core/v1/**", hold)
    assert demo.page_url
    page.goto(demo.page_url)
    expect(page.locator(".skeleton").first).to_be_visible()
    # Measured once the loading state is whole: every card there, three surfaces busy, the fonts laid out.
    page.wait_for_function(LOADING_STATE_SETTLED, arg=list(CARDS.values()))
    boxes = {name: page.locator(selector).bounding_box() for name, selector in CARDS.items()}
    assert page.locator("[aria-busy=true]").count() >= 3
    assert axe_violations(page) == []
    screenshot(page, f"state-loading-{width}")
    released = True
    for route in held:
        route.continue_()
    expect(logs(page).locator("tbody tr").first).to_contain_text("Rp")
    after = {name: page.locator(selector).bounding_box() for name, selector in CARDS.items()}
    # Nothing above the logs moves or resizes when the data comes.
    for name in ("summary", "usage", "logs-box"):
        assert boxes[name] and after[name]
        assert (round(boxes[name]["y"]), round(boxes[name]["height"])) == (
            round(after[name]["y"]),
            round(after[name]["height"]),
        ), name


CARDS = {"summary": "section.summary", "usage": "section.usage", "logs-box": ".logs-scroll"}
LOADING_STATE_SETTLED = """(cards) => document.fonts.status === 'loaded'
  && cards.every((selector) => document.querySelector(selector) !== null)
  && document.querySelectorAll('[aria-busy=true]').length >= 3"""


def test_error_state_of_every_surface_says_what_failed_and_try_again_recovers(page: Any, demo: Server) -> None:
    failing = "**/api/core/v1/{billings/info,usage,mcc_logs,billing_events}*"
    page.route(failing, lambda route: route.fulfill(**envelope(503, "unavailable", "the database is not reachable")))
    assert demo.page_url
    page.goto(demo.page_url)
    for what in ("your balance", "usage", "the deduction logs", "the alert history"):
        expect(page.get_by_text(f"We couldn't load {what}.")).to_be_visible()
    assert page.get_by_role("button", name="Try again").count() == 4
    assert page.get_by_role("status").count() == 0 and page.get_by_role("alert").count() == 0
    assert axe_violations(page) == []
    screenshot(page, "state-error")
    page.set_viewport_size({"width": 360, "height": 780})
    assert no_sideways_scroll(page)
    screenshot(page, "state-error-360")
    page.unroute(failing)
    retries = page.get_by_role("button", name="Try again")
    while (left := retries.count()) > 0:
        retries.first.click()
        # The surface retried loads and its button goes (one click is never taken for the next one's).
        page.wait_for_function(TRY_AGAIN_BUTTONS_FEWER_THAN, arg=left)
    expect(page.get_by_test_id("balance-total")).to_contain_text("Rp")
    expect(logs(page).locator("tbody tr").first).to_contain_text("Rp")
    expect(page.get_by_role("table", name="Alert history")).to_be_visible()


TRY_AGAIN_BUTTONS_FEWER_THAN = """(count) => [...document.querySelectorAll('button')]
  .filter((button) => button.innerText.trim() === 'Try again').length < count"""


def test_empty_state_of_every_surface(page: Any, demo: Server) -> None:
    page.route(
        "**/api/core/v1/billings/info", lambda r: r.fulfill(**envelope(404, "unknown_company", "unknown company"))
    )
    empty_days = {"currency": "IDR", "days": [{"date": "2026-12-01", "amount": 0, "messages": 0, "by_waba": []}]}
    page.route("**/api/core/v1/usage*", lambda r: r.fulfill(json=empty_days))
    page.route("**/api/core/v1/mcc_logs*", lambda r: r.fulfill(json={"data": [], "next_cursor": None}))
    page.route("**/api/core/v1/billing_events*", lambda r: r.fulfill(json={"data": [], "next_cursor": None}))
    assert demo.page_url
    page.goto(demo.page_url)
    for text in ("No package is set up", "No messages have been charged", "No deductions yet", "No alerts yet"):
        expect(page.get_by_text(text)).to_be_visible()
    assert page.get_by_role("button", name="Shared balance details").count() == 0
    assert axe_violations(page) == []
    screenshot(page, "state-empty")
    page.get_by_role("combobox", name="Category").select_option("utility")
    expect(page.get_by_text("No deductions match these filters.")).to_be_visible()
    page.get_by_role("button", name="Clear filters").click()
    expect(page.get_by_text("No deductions yet")).to_be_visible()
    assert page.get_by_role("combobox", name="Category").input_value() == ""


def test_partial_state_shows_what_loaded_and_says_what_failed(page: Any, demo: Server) -> None:
    def stale(route: Route) -> None:
        body = route.fetch().json()
        route.fulfill(json={**body, "stale": True})

    def logs_without_second_page(route: Route) -> None:
        if "cursor=" in route.request.url:
            route.fulfill(**envelope(503, "unavailable", "the database is not reachable"))
        else:
            route.continue_()

    page.route("**/api/core/v1/billings/info", stale)
    page.route("**/api/core/v1/usage*", lambda r: r.fulfill(**envelope(500, "internal", "usage is down")))
    page.route("**/api/core/v1/mcc_logs*", logs_without_second_page)
    open_page(page, demo)
    page.get_by_role("button", name="Load more").click()
    expect(page.get_by_text("We couldn't load more rows.")).to_be_visible()
    assert logs(page).locator("tbody tr").count() == 50
    expect(page.get_by_test_id("summary-partial")).to_contain_text("We couldn't refresh your balance")
    expect(page.get_by_test_id("balance-total")).to_contain_text("Rp")
    expect(page.get_by_text("We couldn't load usage. usage is down.")).to_be_visible()
    assert axe_violations(page) == []
    screenshot(page, "state-partial")


def test_usage_without_the_waba_names_is_partial_and_labels_wabas_by_id(page: Any, demo: Server) -> None:
    page.route("**/api/core/v1/billings/info", lambda r: r.fulfill(**envelope(503, "unavailable", "down")))
    assert demo.page_url
    page.goto(demo.page_url)
    expect(page.get_by_text("We couldn't load the WABA names")).to_be_visible()
    expect(page.locator(".legend li").first).to_have_text("102290129340398")
    expect(page.get_by_text("WABA list unavailable")).to_be_visible()
    assert axe_violations(page) == []
    screenshot(page, "state-partial-usage")


def test_at_360px_nothing_scrolls_sideways(page: Any, demo: Server) -> None:
    page.set_viewport_size({"width": 360, "height": 780})
    open_page(page, demo)
    assert no_sideways_scroll(page)
    page.get_by_role("button", name="Shared balance details").click()
    expect(page.get_by_role("tooltip")).to_be_visible()
    box = page.get_by_role("tooltip").bounding_box()
    trigger = page.get_by_role("button", name="Shared balance details").bounding_box()
    assert box and trigger and box["x"] >= 0 and box["x"] + box["width"] <= 360
    assert box["y"] >= trigger["y"] + trigger["height"]  # below the trigger, never over it
    assert no_sideways_scroll(page)
    assert axe_violations(page) == []
    screenshot(page, "success-360-tooltip")
    page.get_by_role("button", name="Show table").click()
    assert no_sideways_scroll(page)


FOCUS_DESCRIPTION = """() => {
  const el = document.activeElement
  if (!el || el === document.body) return null
  const style = getComputedStyle(el)
  const label = el.labels && el.labels[0] ? el.labels[0].innerText : ''
  const name = el.getAttribute('aria-label') || label || el.innerText || ''
  const outline = style.outlineStyle + ' ' + style.outlineWidth
  return {tag: el.tagName.toLowerCase(), name: name.trim().split('\\n')[0], outline}
}"""


def test_the_whole_flow_works_by_keyboard_alone_with_a_visible_focus_ring(page: Any, demo: Server) -> None:
    open_page(page, demo)
    stops: list[dict[str, str]] = []
    for _ in range(24):
        page.keyboard.press("Tab")
        current = page.evaluate(FOCUS_DESCRIPTION)
        # A date input is one element with a tab stop per part (day, month, year): one stop here.
        if current and (not stops or stops[-1]["name"] != current["name"]):
            stops.append(current)
        if current and current["name"] == "Shared balance details":
            expect(page.get_by_role("tooltip")).to_be_visible()
    names = [stop["name"] for stop in stops]
    expected = [
        "Refresh",
        "Top up",
        "Dismiss this message for this session",
        "Shared balance details",
        "Daily",
        "By WABA",
    ]
    assert names[: len(expected)] == expected
    order = ["Show table", "WABA", "Category", "From", "To", "Download CSV", "Load more"]
    assert [name for name in names if name in order] == order
    assert all(stop["outline"] == "solid 2px" for stop in stops), stops

    # Now do things: filter by WABA with the arrow keys, download the CSV, load more, all by keyboard.
    page.get_by_role("combobox", name="WABA").focus()
    with page.expect_response(lambda r: "/mcc_logs" in r.url and "waba_id=" in r.url):
        page.keyboard.press("ArrowDown")
    expect(logs(page).locator("tbody tr td:nth-child(2)").first).to_have_text(re.compile(r"-1$"))
    page.get_by_role("button", name="Download CSV").focus()
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    assert download.value.suggested_filename.endswith(".csv")
    page.get_by_role("button", name="Load more").focus()
    page.keyboard.press("Enter")
    expect(logs(page).locator("tbody tr")).to_have_count(100)
