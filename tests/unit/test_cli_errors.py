"""Which failures a long-running command waits out, and which end it with one line."""

from __future__ import annotations

import sqlite3

from wabapool.cli.errors import unreachable
from wabapool.storage.errors import StorageUnavailable


def test_a_database_that_did_not_answer_is_waited_for_like_an_unreachable_one() -> None:
    starting_up = StorageUnavailable("the database system is starting up")
    assert unreachable(starting_up)


def test_a_database_without_the_schema_is_not_waited_for() -> None:
    assert not unreachable(sqlite3.OperationalError("no such table: companies"))


def test_an_error_that_is_not_an_operators_is_not_waited_for() -> None:
    assert not unreachable(RuntimeError("a bug"))
