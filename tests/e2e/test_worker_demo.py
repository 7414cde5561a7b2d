"""`wabapool serve --demo` runs the worker in the same process: the demo's events reach its receiver, verified."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.test_serve_process import _free_port, _wait_until_up
from wabapool.cli.demo import DEMO_COMPANY_ID

API_KEY = "e2e-demo-key-0123456789abcdef"


def test_serve_demo_delivers_the_demo_companys_events_to_the_demo_receiver(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WABAPOOL_")}
    env["WABAPOOL_API_KEYS"] = f"payments:{API_KEY}"
    command = [sys.executable, "-m", "wabapool.cli.main", "serve", "--demo", "--port", str(port)]
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, server, deadline_seconds=90)
        top_up = httpx.post(
            f"{base}/iag/v1/quota-managements/top-up",
            json={"company_id": DEMO_COMPANY_ID, "amount": 50_000, "payment_reference": "e2e-demo-top-up"},
            headers={"X-Api-Key": API_KEY},
            timeout=10,
        )
        assert top_up.status_code == 200, top_up.text
        deadline = time.monotonic() + 30
        ours: list[dict] = []
        while time.monotonic() < deadline and not ours:
            deliveries = httpx.get(f"{base}/demo/webhooks", timeout=5).json()["deliveries"]
            # The seeded history's events arrive too; this top-up's is the one to find.
            ours = [d for d in deliveries if d["event"]["data"].get("payment_reference") == "e2e-demo-top-up"]
            time.sleep(0.2)
        assert ours, "the top-up's event did not reach the demo receiver"
        assert all(d["verified"] for d in deliveries)
        (delivery,) = ours
        assert delivery["event"]["type"] == "balance_topped_up"
        assert delivery["event"]["company_id"] == DEMO_COMPANY_ID
        assert "/demo/webhooks" not in httpx.get(f"{base}/openapi.json", timeout=5).text
    finally:
        server.terminate()
        server.wait(20)
