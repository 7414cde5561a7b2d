"""`serve --workers 2` on PostgreSQL: two processes' group commits over the same 50 pools.

Each worker process groups the deductions it receives across pools into shared
transactions; both lock their pools in (company, package) order, so they may
wait for each other but never deadlock. 16 client threads send 1,000
deductions (a tenth of them repeats) over 50 pools, each on a fresh connection
so the kernel spreads them over both workers. Every answer must be 200, every
pool must show exactly the unique codes it was sent (no lost update, no double
charge), and PostgreSQL must have detected no deadlock.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.services import POSTGRES_ADMIN_URL, POSTGRES_TEST_DATABASE, require_postgres, require_redis

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

API_KEY = "e2e-key-0123456789abcdef"
PII_KEYS = "e2e:" + base64.b64encode(b"e2e pii key, 32 bytes long.....!").decode()
POOLS = 50
FIRST_COMPANY_ID = 5_000
SENDS = 1_000
REPEAT_EVERY = 10
UNIT_PRICE_MINOR = 100
ALLOWANCE_MINOR = 10_000_000
CLIENT_THREADS = 16
DATABASE = f"{POSTGRES_TEST_DATABASE}_serve_pools"  # this test's own database, named after the run's


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _fresh_database() -> None:
    import asyncpg

    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()


async def _deadlocks() -> int:
    import asyncpg

    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        return int(await admin.fetchval("SELECT deadlocks FROM pg_stat_database WHERE datname = $1", DATABASE))
    finally:
        await admin.close()


async def _forget_cached_balances(redis_url: str) -> None:
    """This test's companies' balances left in the run's own Redis db by an earlier run (a fresh database
    starts their versions again, so an old entry could look newer)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        for company_id in range(FIRST_COMPANY_ID, FIRST_COMPANY_ID + POOLS):
            async for key in redis.scan_iter(match=f"wabapool:balance:{company_id}*"):
                await redis.delete(key)
    finally:
        await redis.aclose()


def _wait_until_up(base: str, server: subprocess.Popen[bytes], deadline_seconds: float = 60) -> None:
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


def _workers_of(server: subprocess.Popen[bytes]) -> int:
    """How many processes serve runs under it (the kernel's view: /proc/<pid>/task/*/children)."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return len(children)


def test_two_workers_grouping_across_the_same_50_pools_never_deadlock_nor_lose_an_update(tmp_path: Path) -> None:
    require_postgres()
    redis_url = require_redis()
    asyncio.run(_fresh_database())
    asyncio.run(_forget_cached_balances(redis_url))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE
    port = _free_port()
    env = {
        **os.environ,
        "WABAPOOL_DATABASE_URL": url,
        "WABAPOOL_API_KEYS": f"pipeline:{API_KEY}",
        "WABAPOOL_PII_KEYS": PII_KEYS,
        "WABAPOOL_REDIS_URL": redis_url,
    }
    command = [sys.executable, "-m", "wabapool.cli.main", "serve", "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    headers = {"X-Api-Key": API_KEY}
    try:
        _wait_until_up(base, server)
        assert _workers_of(server) >= 2
        with httpx.Client(base_url=f"{base}/iag/v1", headers=headers, timeout=30) as internal:
            assert internal.put("/price-list/wa_utility_id", json={"unit_price": UNIT_PRICE_MINOR}).status_code == 200
            for index in range(POOLS):
                company_id = FIRST_COMPANY_ID + index
                package = {"package": {"allowance": ALLOWANCE_MINOR}}
                assert internal.put(f"/companies/{company_id}", json=package).status_code == 200
                waba = internal.put(f"/companies/{company_id}/wabas/{company_id}0001", json={"name": "Sales"})
                assert waba.status_code == 200
        deadlocks_before = asyncio.run(_deadlocks())

        rng = random.Random(2_300)
        plan = [(FIRST_COMPANY_ID + rng.randrange(POOLS), f"wamid.{index}") for index in range(SENDS)]
        plan = [plan[i - 1] if i % REPEAT_EVERY == 0 and i else plan[i] for i in range(SENDS)]

        def send(item: tuple[int, str]) -> int:
            company_id, code = item
            body = {
                "company_id": company_id,
                "billing_code": "wa",
                "deduction_code": "wa_utility_id",
                "unique_code": code,
                "quantity": 1,
                "extra_attrs": {"waba_id": f"{company_id}0001"},
            }
            # A fresh connection per request, so the kernel spreads them over both workers.
            return httpx.post(
                f"{base}/iag/v1/quota-managements/deduction", json=body, headers=headers, timeout=60
            ).status_code

        with concurrent.futures.ThreadPoolExecutor(CLIENT_THREADS) as pool:
            statuses = list(pool.map(send, plan))
        assert set(statuses) == {200}

        sent = {company_id: set() for company_id in range(FIRST_COMPANY_ID, FIRST_COMPANY_ID + POOLS)}
        for company_id, code in plan:
            sent[company_id].add(code)
        with httpx.Client(base_url=f"{base}/iag/v1", headers=headers, timeout=30) as internal:
            for company_id, codes in sent.items():
                balance = internal.get(f"/quota-managements/{company_id}/balance").json()
                assert balance["total"] == ALLOWANCE_MINOR - len(codes) * UNIT_PRICE_MINOR, company_id
        assert asyncio.run(_deadlocks()) == deadlocks_before
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert b"deadlock" not in stderr.lower()
