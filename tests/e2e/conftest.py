"""Fixtures of the page's browser tests (tests/e2e/test_page_*.py): one Chromium per test module.

Per module, not per session: the sync Playwright API keeps an event loop running in this thread while it is
started, and the asyncio tests that run after the browser modules need the thread's loop free again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.page_support import CHROMIUM, CHROMIUM_ARGS, require_browser_and_build


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser_and_build()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()
