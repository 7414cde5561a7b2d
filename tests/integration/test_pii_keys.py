"""Personal data at rest: nothing in plaintext, a clear refusal for a missing or wrong key, rotation that keeps
every value readable and resumes after a stop."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.api_support import INTERNAL, INTERNAL_HEADERS, PUBLIC, bearer, deduction_body
from tests.conftest import FakeClock
from tests.reports_support import database_url, deduct, provision, report_app
from wabapool import bootstrap
from wabapool.cli.main import app as cli
from wabapool.cli.startup import startup_refusal
from wabapool.config import Settings
from wabapool.pii import DEVELOPMENT_KEYS, PiiKeyError, PiiSealer
from wabapool.service import pii_keys
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade
from wabapool.storage.tables import deduction_requests

NAME = "Rahasia Kusumawardhani"
PHONE = "+6281299887766"
NEW = "k1:" + base64.b64encode(os.urandom(32)).decode()
NEWER = "k2:" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(params=["sqlite", "postgres"])
async def sealed_with_dev(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    """A database whose personal data a demo sealed with the built-in key (what `--demo` wires in)."""
    postgres = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    url = database_url(request.param, tmp_path, postgres)
    clock = FakeClock(datetime(2026, 11, 10, 3, 0, tzinfo=UTC))
    demo = bootstrap.demo_settings(Settings(), database_url=url)
    async with report_app(url, clock, pii_keys=demo.pii_keys) as (client, _context):
        await provision(client, 1, wabas=("4440001",))
        for index in range(7):
            await deduct(client, 1, f"m{index}", waba_id="4440001", customer_name=NAME, phone_number=PHONE)
        await deduct(client, 1, "no-pii", waba_id="4440001")
    assert startup_refusal(Settings(database_url=url), demo=True) is None  # the demo recorded `dev`
    yield url


async def stored_values(url: str) -> list[tuple[bytes | None, bytes | None]]:
    database = Database(url)
    try:
        async with database.read() as connection:
            rows = await connection.execute(
                select(deduction_requests.c.customer_name_enc, deduction_requests.c.phone_number_enc)
            )
            return [(row[0], row[1]) for row in rows]
    finally:
        await database.dispose()


def test_without_keys_outside_demo_the_start_up_check_names_the_variable(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    message = startup_refusal(Settings(database_url=url))
    assert message is not None and "WABAPOOL_PII_KEYS" in message
    with pytest.raises(PiiKeyError, match="WABAPOOL_PII_KEYS"):
        bootstrap.sealer(Settings(database_url=url))
    assert bootstrap.sealer(Settings(database_url=url), demo=True).active_key_id == "dev"


def test_the_public_development_key_set_explicitly_is_refused_outside_demo(tmp_path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'dev.db'}", pii_keys=DEVELOPMENT_KEYS)
    upgrade(settings.database_url)
    message = startup_refusal(settings)
    assert message is not None and "WABAPOOL_PII_KEYS" in message and "development key" in message
    assert "\n" not in message  # one line
    assert startup_refusal(settings, demo=True) is None
    assert bootstrap.sealer(settings, demo=True).active_key_id == "dev"
    # Beside a key of one's own it only reads what it sealed (until `wabapool pii rotate`): allowed.
    assert bootstrap.sealer(Settings(database_url=settings.database_url, pii_keys=f"{DEVELOPMENT_KEYS},{NEW}"))


def test_serve_refuses_the_public_development_key_outside_demo(tmp_path) -> None:
    env = {"WABAPOOL_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}", "WABAPOOL_PII_KEYS": DEVELOPMENT_KEYS}
    result = CliRunner().invoke(cli, ["serve", "--no-migrate"], env=env)
    assert result.exit_code == 2 and "WABAPOOL_PII_KEYS" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("keys", [DEVELOPMENT_KEYS, ""])
def test_the_worker_refuses_the_public_development_key_or_no_keys_outside_demo(tmp_path, keys: str) -> None:
    env = {"WABAPOOL_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}", "WABAPOOL_PII_KEYS": keys}
    result = CliRunner().invoke(cli, ["worker", "--once"], env=env)
    assert result.exit_code == 2, result.output
    assert "refusing to start" in result.output and "WABAPOOL_PII_KEYS" in result.output
    assert "Traceback" not in result.output and "handled" not in result.output


@pytest.mark.parametrize(
    "spec", ["k1", "k1:notbase64!", "k1:" + base64.b64encode(b"short").decode(), f"{NEW},{NEW}", "dev:" + NEW[3:]]
)
def test_a_malformed_key_set_is_refused_without_showing_the_key(spec: str) -> None:
    with pytest.raises(PiiKeyError) as error:
        PiiSealer(spec)
    assert NEW[3:] not in str(error.value)


def test_serve_refuses_to_start_without_keys_and_names_the_variable(tmp_path) -> None:
    env = {"WABAPOOL_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}", "WABAPOOL_PII_KEYS": ""}
    result = CliRunner().invoke(cli, ["serve"], env=env)
    assert result.exit_code == 2
    assert "WABAPOOL_PII_KEYS" in result.output


async def test_serve_refuses_a_key_set_that_lacks_the_key_stored_data_is_sealed_under(sealed_with_dev: str) -> None:
    env = {"WABAPOOL_DATABASE_URL": sealed_with_dev, "WABAPOOL_PII_KEYS": NEW}
    result = CliRunner().invoke(cli, ["serve", "--no-migrate"], env=env)
    assert result.exit_code == 2
    assert "'dev'" in result.output and "refusing to start" in result.output
    # With the old key listed for reading it starts (the check passes), and new data is sealed with k1.
    assert startup_refusal(Settings(database_url=sealed_with_dev, pii_keys=f"{DEVELOPMENT_KEYS},{NEW}")) is None


async def test_the_worker_refuses_a_key_set_that_lacks_the_key_stored_data_is_sealed_under(
    sealed_with_dev: str,
) -> None:
    env = {"WABAPOOL_DATABASE_URL": sealed_with_dev, "WABAPOOL_PII_KEYS": NEW}
    # In a thread: the worker runs its own event loop, and this test's is running.
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["worker", "--once"], env=env)
    assert result.exit_code == 2, result.output
    assert "'dev'" in result.output and "refusing to start" in result.output
    assert "Traceback" not in result.output and "handled" not in result.output
    # The worker only reads sealed values: it records no key of its own, so serve's check is unchanged.
    assert "'dev'" in (startup_refusal(Settings(database_url=sealed_with_dev, pii_keys=NEW)) or "")
    with_old_key = {**env, "WABAPOOL_PII_KEYS": f"{DEVELOPMENT_KEYS},{NEW}"}
    started = await asyncio.to_thread(CliRunner().invoke, cli, ["worker", "--once"], env=with_old_key)
    assert started.exit_code == 0 and "handled" in started.output, started.output


async def test_rotation_re_seals_everything_keeps_it_readable_and_resumes_after_a_stop(sealed_with_dev: str) -> None:
    url = sealed_with_dev
    both = PiiSealer(f"{DEVELOPMENT_KEYS},{NEW}")
    database = Database(url)
    try:
        stopped = await pii_keys.rotate(database, both, page_rows=3, stop_after_pages=1)
        assert stopped.rows_seen == 3
        # Stopped half way: the old key is still needed.
        assert "'dev'" in (startup_refusal(Settings(database_url=url, pii_keys=NEW)) or "")
        resumed = await pii_keys.rotate(database, both, page_rows=3)
        assert resumed.resumed_after_id > 0 and resumed.rows_seen == 8 - 3
    finally:
        await database.dispose()
    new_only = PiiSealer(NEW)
    values = await stored_values(url)
    assert len(values) == 8
    for name_enc, phone_enc in values:
        for sealed in (name_enc, phone_enc):
            assert sealed is None or bytes(sealed).startswith(b"k1.")
    assert {(new_only.open(n), new_only.open(p)) for n, p in values} == {(NAME, PHONE), (None, None)}
    assert startup_refusal(Settings(database_url=url, pii_keys=NEW)) is None
    # The app on the new key alone: the phone search finds the re-keyed rows, a retry is still a replay.
    clock = FakeClock(datetime(2026, 11, 10, 4, 0, tzinfo=UTC))
    from tests.api_support import api_client, settings_for

    async with api_client(settings_for(url, pii_keys=NEW), clock=clock) as (client, context):
        found = (await client.get(f"{PUBLIC}/mcc_logs", params={"phone_number": PHONE}, headers=bearer(1))).json()
        assert len(found["data"]) == 7 and found["data"][0]["customer_name"] == NAME
        retry = await client.post(
            f"{INTERNAL}/quota-managements/deduction",
            json=deduction_body(1, "m3", waba_id="4440001", customer_name=NAME, phone_number=PHONE),
            headers=INTERNAL_HEADERS,
        )
        assert retry.status_code == 200 and retry.json()["replayed"] is True, retry.text


async def test_a_second_rotation_moves_on_to_the_newest_key(sealed_with_dev: str) -> None:
    database = Database(sealed_with_dev)
    try:
        await pii_keys.rotate(database, PiiSealer(f"{DEVELOPMENT_KEYS},{NEW}"))
        again = await pii_keys.rotate(database, PiiSealer(f"{NEW},{NEWER}"))
        assert again.rows_changed == 7 and again.resumed_after_id == 0
        idle = await pii_keys.rotate(database, PiiSealer(f"{NEW},{NEWER}"))
        assert idle.rows_changed == 0
    finally:
        await database.dispose()
    newest = PiiSealer(f"{NEW},{NEWER}")
    assert {newest.open(n) for n, _ in await stored_values(sealed_with_dev)} == {NAME, None}
    assert startup_refusal(Settings(database_url=sealed_with_dev, pii_keys=f"{NEW},{NEWER}")) is None
    assert "'k2'" in (startup_refusal(Settings(database_url=sealed_with_dev, pii_keys=NEW)) or "")


async def test_pii_rotate_command_shows_progress_and_finishes(sealed_with_dev: str) -> None:
    env = {"WABAPOOL_DATABASE_URL": sealed_with_dev, "WABAPOOL_PII_KEYS": f"{DEVELOPMENT_KEYS},{NEW}"}
    # A command runs its own event loop: give it a thread, as a shell would give it a process.
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["pii", "rotate", "--page-rows", "2"], env=env)
    assert result.exit_code == 0, result.output
    assert "rotated" in result.output and "8 rows read" in result.output
    missing = CliRunner().invoke(
        cli, ["pii", "rotate"], env={"WABAPOOL_DATABASE_URL": sealed_with_dev, "WABAPOOL_PII_KEYS": ""}
    )
    assert missing.exit_code == 2 and "WABAPOOL_PII_KEYS" in missing.output


@pytest.mark.parametrize("kind", ["postgres"])
async def test_a_dump_of_the_database_holds_no_name_or_phone_number_in_plaintext(
    kind: str, postgres_url: str, tmp_path
) -> None:
    clock = FakeClock(datetime(2026, 11, 10, 3, 0, tzinfo=UTC))
    async with report_app(postgres_url, clock, pii_keys=NEW) as (client, _context):
        await provision(client, 1, wabas=("4440001",))
        await deduct(client, 1, "m1", waba_id="4440001", customer_name=NAME, phone_number=PHONE)
        await deduct(client, 1, "m2", waba_id="4440001", customer_name=NAME, phone_number="+62 812-9988-7766")
        listed = (await client.get(f"{PUBLIC}/mcc_logs", headers=bearer(1))).json()["data"]
        assert listed[0]["customer_name"] == NAME  # stored, and readable through the API
    dump = _dump(postgres_url)
    assert "deduction_requests" in dump and len(dump) > 1000
    for secret in (NAME, "Kusumawardhani", PHONE, PHONE[1:], "81299887766", "9988-7766"):
        assert secret not in dump, secret


def test_the_sqlite_file_holds_no_name_or_phone_number_in_plaintext(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"

    async def fill() -> None:
        clock = FakeClock(datetime(2026, 11, 10, 3, 0, tzinfo=UTC))
        async with report_app(url, clock, pii_keys=NEW) as (client, _context):
            await provision(client, 1, wabas=("4440001",))
            await deduct(client, 1, "m1", waba_id="4440001", customer_name=NAME, phone_number=PHONE)

    asyncio.run(fill())
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("plain.db"))
    for secret in (NAME, PHONE, PHONE[1:], "81299887766"):
        assert secret.encode() not in raw, secret


def _dump(url: str) -> str:
    """`pg_dump` of the test database in plain SQL (bytea as hex: a sealed value's bytes cannot hide text)."""
    binary = shutil.which("pg_dump")
    assert binary is not None, "pg_dump is needed for this test"
    completed = subprocess.run(
        [binary, "--data-only", "--dbname", url], capture_output=True, text=True, timeout=60, check=True
    )
    # bytea shows as \\x<hex>: decode every such value too, so text inside a bytea would be found.
    text = completed.stdout
    decoded = [bytes.fromhex(value).decode("latin-1") for value in re.findall(r"\\\\x([0-9a-f]+)", text)]
    assert decoded, "the dump holds the sealed values"
    return text + "\n".join(decoded)
