"""Every `wabapool` verb meets an operator's mistake with one line saying what to do, never a traceback."""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import COMPANY_ID, provision_demo_pool, service_for
from wabapool.cli.main import app
from wabapool.storage.migrate import upgrade

VERBS = [
    ["reconcile"],
    ["events", "list"],
    ["events", "dead"],
    ["events", "replay", "evt-1"],
    ["statements", "--company-id", "1"],
    ["flags", "show", "--company-id", "1"],
    ["flags", "set", "on", "--company-id", "1"],
    ["backfill", "--all", "--dry-run"],
    ["backfill", "--company-id", "1"],
    ["pii", "rotate"],
    ["worker", "--once"],
]
THIRTY_DIGITS = "1" * 30
PII_KEYS = "k1:" + base64.b64encode(b"operator-errors pii key 32 bytes").decode()


def _environment(url: str) -> dict[str, str]:
    return {
        "WABAPOOL_DATABASE_URL": url,
        "WABAPOOL_PII_KEYS": PII_KEYS,
        "WABAPOOL_WEBHOOK_ALLOW_PRIVATE": "true",
        "WABAPOOL_JWT_SECRET": "test-secret-with-enough-entropy-0123456789",
        "COLUMNS": "200",
    }


def _one_line_error(arguments: list[str], url: str) -> str:
    result = CliRunner().invoke(app, arguments, env=_environment(url))
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an exception that escaped
    assert "Traceback" not in result.output
    # One line of error (a progress bar the verb had started may stand before it).
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.mark.parametrize("arguments", VERBS + [["migrate"]], ids=" ".join)
def test_a_database_that_cannot_be_reached_is_one_line(arguments: list[str], tmp_path: Path) -> None:
    line = _one_line_error(arguments, "postgresql://wabapool@127.0.0.1:1/nowhere")
    assert "cannot be reached" in line and "WABAPOOL_DATABASE_URL" in line


@pytest.mark.parametrize("arguments", VERBS, ids=" ".join)
def test_a_database_without_the_schema_says_to_migrate(arguments: list[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert "wabapool migrate" in _one_line_error(arguments, f"sqlite:///{empty}")


@pytest.mark.postgres
@pytest.mark.parametrize("arguments", [["reconcile"], ["events", "list"], ["backfill", "--all", "--dry-run"]])
def test_a_postgres_database_that_does_not_exist_says_to_create_it(arguments: list[str], postgres_url: str) -> None:
    missing = postgres_url.rsplit("/", 1)[0] + f"/{os.environ.get('WABAPOOL_TEST_POSTGRES_DB', 'wabapool_test')}_none"
    line = _one_line_error(arguments, missing)
    assert "does not exist" in line and "wabapool migrate" in line


@pytest.mark.parametrize("url", ["not a url", "foo://bar/baz", "postgresql://:x@[::1/db"])
@pytest.mark.parametrize(
    "arguments", [["reconcile"], ["events", "list"], ["migrate"], ["statements", "--company-id", "1"]]
)
def test_a_malformed_database_url_is_one_line(arguments: list[str], url: str) -> None:
    assert "WABAPOOL_DATABASE_URL" in _one_line_error(arguments, url)


@pytest.mark.parametrize(
    "arguments",
    [
        ["backfill", "--company-id", THIRTY_DIGITS],
        ["backfill", "--rollback", "--company-id", THIRTY_DIGITS, "--dry-run"],
        ["statements", "--company-id", THIRTY_DIGITS],
        ["flags", "show", "--company-id", THIRTY_DIGITS],
        ["events", "list", "--company-id", THIRTY_DIGITS],
        ["token", "--company-id", THIRTY_DIGITS],
        ["backfill", "--company-id", "0"],
    ],
    ids=" ".join,
)
def test_an_out_of_range_company_id_is_refused_before_any_query(arguments: list[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    result = CliRunner().invoke(app, arguments, env=_environment(url))
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output and "Invalid value for '--company-id'" in result.output


MARKUP = ["[/]", "[bold red]receiver down[/blue]", "[link=x]y", "\\[x]"]


async def _events(url: str) -> None:
    """A pool with a webhook and one top-up event per markup text."""
    from wabapool.storage.database import Database

    database = Database(url)
    try:
        service = service_for(database)
        await provision_demo_pool(service)
        await service.set_webhook(COMPANY_ID, url="http://127.0.0.1:9/hook")
        for index, _ in enumerate(MARKUP):
            await service.top_up(COMPANY_ID, amount=100, payment_reference=f"pay-{index}")
    finally:
        await database.dispose()


@pytest.mark.parametrize("command", [["events", "list"], ["events", "dead"]])
def test_receiver_error_text_is_printed_literally_not_as_markup(command: list[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    asyncio.run(_events(url))
    with sqlite3.connect(tmp_path / "cli.db") as connection:
        ids = [row[0] for row in connection.execute("SELECT id FROM outbox_events ORDER BY id")]
        for row_id, text in zip(ids, MARKUP, strict=False):
            connection.execute(
                "UPDATE outbox_events SET dead_at = created_at, next_attempt_at = NULL, last_status = 500,"
                " last_error = ? WHERE id = ?",
                (text, row_id),
            )
    result = CliRunner().invoke(app, command, env=_environment(url))
    assert result.exit_code == 0, result.output
    for text in MARKUP:
        assert text in result.output
