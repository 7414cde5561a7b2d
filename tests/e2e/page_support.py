"""The page's browser tests: a real `wabapool serve` process, the system Chromium, axe-core, screenshots.

Screenshots go to `test-artifacts/page/` (not committed). Chromium comes from the system package
(`apt-get install chromium`, see scripts/install.sh); Playwright's own browser download is not used.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from wabapool.api.app import WEB_DIST

CHROMIUM = os.environ.get("WABAPOOL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "page"
API_KEY = "page-e2e-key-0123456789abcdef"
JWT_SECRET = "page-e2e-secret-0123456789abcdef0123456789"
PII_KEYS = "k1:" + base64.b64encode(b"page-e2e-pii-key-32-bytes-long!!").decode()
PUBLIC = "/api/core/v1"
ANALYTICS_PATH = f"{PUBLIC}/analytics/events"
TOOLTIP_EVENT = "billing_shared_balance_tooltip_opened"


def require_browser_and_build() -> None:
    """The built page and Chromium; under CI=true a missing one fails instead of skipping."""
    problems = []
    if not (WEB_DIST / "index.html").is_file():
        problems.append("the page is not built (npm --prefix web ci && npm --prefix web run build)")
    if not os.access(CHROMIUM, os.X_OK):
        problems.append(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    if not problems:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("; ".join(problems) + " (CI=true: a missing prerequisite is a failure)")
    pytest.skip("; ".join(problems))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    output: Path
    env: dict[str, str]
    token: str | None = None
    page_url: str | None = None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def api(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=f"{self.base}{PUBLIC}", headers=headers, timeout=30)

    def internal(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.base}/iag/v1", headers={"X-Api-Key": API_KEY}, timeout=30)

    def metric(self, metric: str, /, **labels: str) -> float:
        """One sample of /metrics (0 when the series does not exist yet)."""
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        for line in text.splitlines():
            if not line.startswith(metric + "{"):
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.index("}") + 1]))
            if all(found.get(key) == value for key, value in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def start_serve(workdir: Path, *arguments: str, **variables: str) -> Server:
    """`wabapool serve` on a free port in `workdir`; stdout goes to a file (the app logs a line per request)."""
    port = free_port()
    env = {
        **os.environ,
        "WABAPOOL_API_KEYS": f"pipeline:{API_KEY}",
        "WABAPOOL_JWT_SECRET": JWT_SECRET,
        "WABAPOOL_PII_KEYS": PII_KEYS,
        **{f"WABAPOOL_{name}": value for name, value in variables.items()},
    }
    env.pop("WABAPOOL_REDIS_URL", None)
    output = workdir / "serve.out"
    command = [sys.executable, "-m", "wabapool.cli.main", "serve", "--port", str(port), *arguments]
    with output.open("wb") as sink:
        process = subprocess.Popen(command, env=env, cwd=workdir, stdout=sink, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, output, env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}: {output.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        server.stop()
        raise AssertionError("serve did not come up")
    match = re.search(r"page: (\S+#token=(\S+))", output.read_text())
    if match:
        server.page_url, server.token = match.group(1), match.group(2)
    return server


def issue(company_id: int, role: str = "owner") -> str:
    from wabapool.security import issue_token

    return issue_token(company_id=company_id, role=role, secret=JWT_SECRET, ttl_seconds=3600)


def rupiah(amount_minor: int) -> str:
    """The SPEC's form, written independently of the page's code: 123456700 sen -> "Rp 1.234.567"."""
    sign = "\u2212" if amount_minor < 0 else ""
    whole, cents = divmod(abs(amount_minor), 100)
    text = f"Rp {whole:,}".replace(",", ".")
    if cents:
        text += f",{cents:02d}".rstrip("0")
    return sign + text


def plain(text: str) -> str:
    return text.replace("\u00a0", " ").strip()


def axe_violations(page: Any) -> list[str]:
    """axe-core's violations on the page as it is now (rule id and the first offending node)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    violations = results.response.get("violations", [])
    return [f"{v['id']}: {v['help']} at {v['nodes'][0]['target'] if v['nodes'] else '?'}" for v in violations]


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def no_sideways_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))
