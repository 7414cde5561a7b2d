"""`wabapool serve` as a real process on a fresh SQLite file: migrates itself and answers over HTTP."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.services import require_redis

API_KEY = "e2e-key-0123456789abcdef"
SECRET = "e2e-secret-0123456789abcdef0123456789"
PII_KEYS = "e2e:" + base64.b64encode(b"e2e pii key, 32 bytes long.....!").decode()
# A server process imports the whole app before it answers; two of them on a loaded 2-core CI machine were
# seen to take 28 s, so the bound leaves room (it only ends a wait that is already a failure).
SERVER_START_SECONDS = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(base: str, server: subprocess.Popen[bytes], deadline_seconds: float = SERVER_START_SECONDS) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("server did not come up")


def _pids_serving(log: Path, route: str) -> set[int]:
    """The processes that logged a request to `route`."""
    pids = set()
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == "request" and entry.get("route") == route:
                pids.add(entry["pid"])
    return pids


def _wait_until_both_serve(base: str, log: Path) -> None:
    """Health checks on fresh connections until both server processes have answered one."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while len(_pids_serving(log, "/healthz")) < 2:
        assert time.monotonic() < deadline, "the second server process never answered"
        httpx.get(f"{base}/healthz", timeout=5)


def _serve(tmp_path: Path, *arguments: str, **variables: str) -> tuple[str, dict[str, str], subprocess.Popen[bytes]]:
    """`wabapool serve` on a fresh SQLite file in tmp_path: its base URL, environment and process.

    Its log lines (JSON, one per request, with the serving process's pid) go to tmp_path/server.log.
    """
    port = _free_port()
    env = {
        **os.environ,
        "WABAPOOL_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
        "WABAPOOL_API_KEYS": f"pipeline:{API_KEY}",
        "WABAPOOL_PII_KEYS": PII_KEYS,
        "PYTHONUNBUFFERED": "1",
        **{f"WABAPOOL_{name}": value for name, value in variables.items()},
    }
    command = [sys.executable, "-m", "wabapool.cli.main", "serve", "--port", str(port), *arguments]
    with (tmp_path / "server.log").open("ab") as log:
        server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.PIPE)
    return f"http://127.0.0.1:{port}", env, server


def test_serve_migrates_a_fresh_database_and_bills_over_http(tmp_path: Path) -> None:
    base, env, server = _serve(tmp_path, JWT_SECRET=SECRET)
    try:
        _wait_until_up(base, server)
        internal = httpx.Client(base_url=f"{base}/iag/v1", headers={"X-Api-Key": API_KEY}, timeout=10)
        assert internal.put("/companies/77", json={"billing_version": "v3"}).status_code == 200
        assert internal.put("/companies/77/wabas/100200300", json={"name": "Sales"}).status_code == 200
        assert internal.put("/price-list/wa_utility_id", json={"unit_price": 35_600}).status_code == 200
        topped = internal.post(
            "/quota-managements/top-up", json={"company_id": 77, "amount": 100_000, "payment_reference": "pay-1"}
        )
        assert topped.json()["value_after"] == 100_000
        body = {
            "company_id": 77,
            "billing_code": "wa",
            "deduction_code": "wa_utility_id",
            "unique_code": "wamid.e2e",
            "quantity": 1,
            "extra_attrs": {"waba_id": "100200300"},
        }
        deduction = internal.post("/quota-managements/deduction", json=body).json()
        assert deduction["allocations"] == [
            {"credited_to": "wa_balance_additional", "quota_type": "additional", "amount": 35_600}
        ]
        token = subprocess.run(
            [sys.executable, "-m", "wabapool.cli.main", "token", "--company-id", "77", "--role", "admin"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        info = httpx.get(f"{base}/api/core/v1/billings/info", headers={"Authorization": f"Bearer {token}"}).json()
        assert info["balance"]["total"] == 64_400
        sales = {
            "waba_id": "100200300",
            "name": "Sales",
            "spent_this_cycle": 35_600,
            "daily_spend": 0,
            "spend_cap": None,
            "cap_spent": None,
        }
        assert info["wabas"] == [sales]
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_serve_refuses_several_workers_without_a_shared_cache(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WABAPOOL_REDIS_URL"}
    env |= {"WABAPOOL_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}", "WABAPOOL_API_KEYS": f"pipeline:{API_KEY}"}
    completed = subprocess.run(
        [sys.executable, "-m", "wabapool.cli.main", "serve", "--workers", "2", "--port", str(_free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "WABAPOOL_REDIS_URL" in completed.stdout


@pytest.mark.redis
def test_two_workers_share_one_pool_and_charge_each_deduction_once(tmp_path: Path) -> None:
    base, _, server = _serve(tmp_path, "--workers", "2", REDIS_URL=require_redis())
    try:
        _wait_until_up(base, server)
        headers = {"X-Api-Key": API_KEY}
        with httpx.Client(base_url=f"{base}/iag/v1", headers=headers, timeout=30) as internal:
            assert internal.put("/companies/78", json={"package": {"allowance": 1_000_000}}).status_code == 200
            assert internal.put("/companies/78/wabas/100200301", json={"name": "Sales"}).status_code == 200
            assert internal.put("/price-list/wa_utility_id", json={"unit_price": 100}).status_code == 200

        def send(index: int) -> int:
            body = {
                "company_id": 78,
                "billing_code": "wa",
                "deduction_code": "wa_utility_id",
                "unique_code": f"wamid.{index % 150}",  # a third are resent: applied once, replayed after
                "quantity": 1,
                "extra_attrs": {"waba_id": "100200301"},
            }
            # A fresh connection per request, so the kernel spreads them over both workers.
            return httpx.post(f"{base}/iag/v1/quota-managements/deduction", json=body, headers=headers).status_code

        _wait_until_both_serve(base, tmp_path / "server.log")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert set(pool.map(send, range(200))) == {200}
        balance = httpx.get(f"{base}/iag/v1/quota-managements/78/balance", headers=headers).json()
        assert balance["total"] == 1_000_000 - 150 * 100
    finally:
        server.terminate()
        server.wait(timeout=15)
    # Both processes charged deductions (a server that ignored --workers 2 would show one pid).
    assert len(_pids_serving(tmp_path / "server.log", "/iag/v1/quota-managements/deduction")) == 2
