"""The Package Usage page's budget, measured (not a test): LCP, CLS, INP of two interactions, JS size.

Starts `wabapool serve --demo` in a temporary directory, opens the page in the system Chromium (headless,
loopback) and reads the browser's own PerformanceObserver entries: `largest-contentful-paint`, `layout-shift`
(summed, so an upper bound of CLS) and `event` timing with interaction ids (INP is the slowest interaction's
duration, input to next paint). The two interactions the budget names are run with real input events: a click
that opens the shared-balance tooltip and an arrow key that changes the WABA filter. The JavaScript size is the
built bundle gzipped at level 9. Prints a table and writes JSON to bench/results/page_budget.json.

    python -m bench.page_budget [--runs 5] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from wabapool.api.app import WEB_DIST

RESULTS = Path(__file__).parent / "results"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BUDGET = {"lcp_ms": 1500, "cls": 0.05, "inp_tooltip_ms": 100, "inp_filter_ms": 100, "js_gzip_kb": 120}

# Runs before the page's own script: every entry of the kinds we need, buffered from navigation start.
OBSERVE = """
window.__budget = { lcp: 0, cls: 0, interactions: [] };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__budget.lcp = entry.renderTime || entry.startTime;
}).observe({ type: 'largest-contentful-paint', buffered: true });
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if (!entry.hadRecentInput) window.__budget.cls += entry.value;
}).observe({ type: 'layout-shift', buffered: true });
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if (!entry.interactionId) continue;
    window.__budget.interactions.push({ id: entry.interactionId, name: entry.name, duration: entry.duration });
  }
}).observe({ type: 'event', durationThreshold: 16, buffered: true });
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve_demo(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    output = workdir / "serve.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "wabapool.cli.main", "serve", "--demo", "--port", str(port)],
            cwd=workdir,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "WABAPOOL_REDIS_URL"},
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    match = re.search(r"page: (\S+)", output.read_text())
    if not match:
        process.terminate()
        raise SystemExit(f"serve --demo did not print the page's address: {output.read_text()[-1000:]}")
    return process, match.group(1)


def _interaction_ms(page: Any, before: int) -> float:
    """The slowest interaction recorded since `before` entries (0 when under the 16 ms threshold)."""
    page.wait_for_timeout(300)
    entries = page.evaluate("window.__budget.interactions")[before:]
    return max((entry["duration"] for entry in entries), default=0.0)


def measure_once(browser: Any, url: str) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.add_init_script(OBSERVE)
    page.goto(url)
    page.get_by_role("table", name="deduction").locator("tbody tr").first.wait_for()
    page.wait_for_timeout(1000)
    lcp, cls = page.evaluate("[window.__budget.lcp, window.__budget.cls]")

    count = len(page.evaluate("window.__budget.interactions"))
    page.get_by_role("button", name="Shared balance details").click()
    page.get_by_role("tooltip").wait_for()
    tooltip = _interaction_ms(page, count)
    page.keyboard.press("Escape")

    select = page.get_by_role("combobox", name="WABA")
    select.focus()
    count = len(page.evaluate("window.__budget.interactions"))
    with page.expect_response(lambda response: "/mcc_logs" in response.url):
        page.keyboard.press("ArrowDown")
    filter_change = _interaction_ms(page, count)
    context.close()
    return {"lcp_ms": lcp, "cls": cls, "inp_tooltip_ms": tooltip, "inp_filter_ms": filter_change}


def bundle_sizes() -> dict[str, float]:
    assets = WEB_DIST / "assets"
    js = [path for path in assets.glob("*.js")]
    css = [path for path in assets.glob("*.css")]
    if not js:
        raise SystemExit("the page is not built: npm --prefix web run build")
    return {
        "js_raw_kb": sum(p.stat().st_size for p in js) / 1024,
        "js_gzip_kb": sum(len(gzip.compress(p.read_bytes(), 9)) for p in js) / 1024,
        "css_gzip_kb": sum(len(gzip.compress(p.read_bytes(), 9)) for p in css) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    arguments = parser.parse_args()
    from playwright.sync_api import sync_playwright

    console = Console()
    sizes = bundle_sizes()
    with tempfile.TemporaryDirectory(prefix="page-budget-") as workdir:
        server, url = _serve_demo(Path(workdir))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=arguments.chromium, args=CHROMIUM_ARGS)
                measure_once(browser, url)  # warm-up: the first load fills the server's balance cache
                runs = [measure_once(browser, url) for _ in range(arguments.runs)]
                version = browser.version
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=15)
    figures = {name: statistics.median(run[name] for run in runs) for name in runs[0]} | sizes
    worst = {name: max(run[name] for run in runs) for name in runs[0]}
    table = Table(title=f"Package Usage page budget (Chromium {version}, demo data, loopback, {len(runs)} runs)")
    for column in ("figure", "median", "worst", "budget", "within"):
        table.add_column(column, justify="right" if column != "figure" else "left")
    for name, value in figures.items():
        budget = BUDGET.get(name)
        table.add_row(
            name,
            f"{value:.3f}" if name == "cls" else f"{value:.1f}",
            (f"{worst[name]:.3f}" if name == "cls" else f"{worst[name]:.1f}") if name in worst else "",
            "" if budget is None else f"< {budget}",
            "" if budget is None else ("yes" if max(value, worst.get(name, value)) < budget else "NO"),
        )
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    report = {"at": datetime.now(UTC).isoformat(), "chromium": version, "median": figures, "worst": worst, "runs": runs}
    (RESULTS / "page_budget.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
