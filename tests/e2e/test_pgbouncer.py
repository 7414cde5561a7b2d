"""`wabapool serve` and `wabapool worker` through PgBouncer in transaction pooling mode, as real processes.

The server migrates through PgBouncer, a burst of concurrent deductions is charged exactly once each
(more client connections than PgBouncer's server connections, so transactions hop between them), and
the worker delivers the webhooks (LISTEN on the direct URL), each verified with `standardwebhooks`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import func, select

from tests.conftest import truncate_all
from tests.e2e.test_serve_process import API_KEY, PII_KEYS, SECRET, _free_port, _wait_until_up
from tests.pgbouncer import POOL_SIZE, pgbouncer, transactions_served
from tests.worker_receiver import Receiver
from wabapool.service.reconcile import reconcile
from wabapool.storage.database import Database
from wabapool.storage.tables import deduction_requests, outbox_events

COMPANY = 8801
WABA = "880100200300"
PRICE = 25
ALLOWANCE = 10_000
DEDUCTIONS = 240
# Concurrent senders: several times PgBouncer's server connections, so clients queue for them.
SENDERS = 4 * POOL_SIZE
# How long the burst and the deliveries may take on a loaded CI machine before the test gives up.
DEADLINE_SECONDS = 120.0


def _start(command: str, env: dict[str, str], tmp_path: Path, *arguments: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "wabapool.cli.main", command, *arguments],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / f"{command}.log").open("wb"),
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


async def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_serve_and_worker_behind_pgbouncer_in_transaction_mode_charge_once_and_deliver_signed_webhooks(
    postgres_url: str, tmp_path: Path
) -> None:
    direct = Database(postgres_url)
    await truncate_all(direct)
    with pgbouncer(postgres_url) as pooled_url, Receiver() as receiver:
        port = _free_port()
        env = {
            **os.environ,
            "WABAPOOL_DATABASE_URL": pooled_url,
            "WABAPOOL_DATABASE_DIRECT_URL": postgres_url,
            "WABAPOOL_API_KEYS": f"pipeline:{API_KEY}",
            "WABAPOOL_JWT_SECRET": SECRET,
            "WABAPOOL_PII_KEYS": PII_KEYS,
            "WABAPOOL_WEBHOOK_ALLOW_PRIVATE": "true",
            "WABAPOOL_WORKER_POLL_SECONDS": "0.2",
            "WABAPOOL_WEBHOOK_RETRY_SECONDS": "0,0",
        }
        server = _start("serve", env, tmp_path, "--port", str(port))
        worker = None
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_until_up(base, server, deadline_seconds=60)
            async with httpx.AsyncClient(
                base_url=f"{base}/iag/v1", headers={"X-Api-Key": API_KEY}, timeout=30
            ) as internal:
                assert (await internal.put(f"/companies/{COMPANY}", json={"billing_version": "v3"})).status_code == 200
                assert (await internal.put(f"/companies/{COMPANY}/wabas/{WABA}", json={"name": "Sales"})).is_success
                assert (await internal.put("/price-list/wa_marketing_id", json={"unit_price": PRICE})).is_success
                hook = await internal.put(f"/companies/{COMPANY}/webhook", json={"url": receiver.url})
                assert hook.status_code == 200, hook.text
                receiver.secret = hook.json()["secret"]
                topped = await internal.post(
                    "/quota-managements/top-up",
                    json={"company_id": COMPANY, "amount": ALLOWANCE, "payment_reference": "pgb-1"},
                )
                assert topped.status_code == 200, topped.text
                worker = _start("worker", env, tmp_path)

                gate = asyncio.Semaphore(SENDERS)

                async def deduct(n: int) -> int:
                    body = {
                        "company_id": COMPANY,
                        "billing_code": "wa",
                        "deduction_code": "wa_marketing_id",
                        # Every tenth one sent twice: a replay must not charge again.
                        "unique_code": f"wamid.pgb.{n - n % 10 if n % 10 == 1 else n}",
                        "quantity": 1,
                        "extra_attrs": {"waba_id": WABA},
                    }
                    async with gate:
                        response = await internal.post("/quota-managements/deduction", json=body)
                    assert response.status_code == 200, response.text
                    return int(response.json()["value_after"])

                after = await asyncio.wait_for(
                    asyncio.gather(*(deduct(n) for n in range(DEDUCTIONS))), DEADLINE_SECONDS
                )

            distinct = len({n - n % 10 if n % 10 == 1 else n for n in range(DEDUCTIONS)})
            # The burst went through PgBouncer: its totals (published every second) count each deduction's
            # transaction at least.
            await _wait_for(lambda: transactions_served(pooled_url) >= distinct, "PgBouncer's stats")
            assert min(after) == ALLOWANCE - distinct * PRICE  # each code charged once, replays not again
            async with direct.read() as connection:
                charged = (
                    await connection.execute(
                        select(func.count(), func.sum(deduction_requests.c.amount_minor)).where(
                            deduction_requests.c.company_id == COMPANY
                        )
                    )
                ).one()
            assert tuple(charged) == (distinct, distinct * PRICE)

            async def delivered() -> list[str]:
                async with direct.read() as connection:
                    rows = await connection.execute(
                        select(outbox_events.c.event_id).where(
                            (outbox_events.c.company_id == COMPANY) & outbox_events.c.delivered_at.is_not(None)
                        )
                    )
                    return [row.event_id for row in rows]

            async with direct.read() as connection:
                raised = list(
                    (
                        await connection.execute(
                            select(outbox_events.c.event_id).where(outbox_events.c.company_id == COMPANY)
                        )
                    ).scalars()
                )
            assert raised, "the top-up raised no event"
            await _wait_for(lambda: {r.webhook_id for r in receiver.received} >= set(raised), "the webhooks")
            deadline = time.monotonic() + DEADLINE_SECONDS
            while set(await delivered()) != set(raised):
                assert time.monotonic() < deadline, "the deliveries were not recorded"
                await asyncio.sleep(0.05)
        finally:
            if worker is not None:
                _stop(worker)
            _stop(server)
    assert receiver.received and all(r.verified for r in receiver.received)
    report = await reconcile(direct)
    await direct.dispose()
    assert report.ok, report.violations
    # The server answered through PgBouncer without a driver error in its log.
    log = (tmp_path / "serve.log").read_text()
    assert "prepared statement" not in log and "InvalidCachedStatement" not in log
