"""The unit of work's retry policy and after-commit hooks, with an in-memory database (no SQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest

from wabapool.service import unit_of_work
from wabapool.service.unit_of_work import CodeTakenMeanwhile, PackageMovedMeanwhile, UnitOfWork
from wabapool.storage.database import Database
from wabapool.storage.errors import OutcomeUnknown, StorageUnavailable, UniqueConflict


class FakeDatabase:
    """Records each transaction's end: committed (left normally) or rolled back (left by an exception)."""

    def __init__(self) -> None:
        self.ends: list[str] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        try:
            yield object()
        except BaseException:
            self.ends.append("rollback")
            raise
        self.ends.append("commit")


def run(database: FakeDatabase, body: Any, **options: Any) -> Any:
    return unit_of_work.run(cast(Database, database), body, **options)


async def test_a_taken_code_rolls_back_and_the_next_attempt_looks_the_codes_up() -> None:
    database, seen = FakeDatabase(), []

    async def body(unit: UnitOfWork) -> str:
        seen.append(unit.codes_taken)
        if len(seen) == 1:
            raise UniqueConflict("UniqueViolationError")
        if len(seen) == 2:
            raise CodeTakenMeanwhile
        return "done"

    assert await run(database, body) == "done"
    assert seen == [False, True, True]
    assert database.ends == ["rollback", "rollback", "commit"]


async def test_a_code_taken_again_after_the_look_up_is_raised_as_a_bug() -> None:
    async def body(unit: UnitOfWork) -> None:
        raise UniqueConflict("UniqueViolationError")

    with pytest.raises(RuntimeError, match="despite the pool lock"):
        await run(FakeDatabase(), body)


async def test_hooks_run_after_the_commit_and_never_for_an_attempt_that_rolled_back() -> None:
    database, ran = FakeDatabase(), []
    attempts = 0

    async def body(unit: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        number = attempts

        async def hook() -> None:
            ran.append((number, list(database.ends)))

        unit.after_commit(hook)
        if number == 1:
            raise PackageMovedMeanwhile

    await run(database, body)
    assert ran == [(2, ["rollback", "commit"])]


async def test_conflicts_past_the_limit_answer_unavailable_after_exactly_that_many_transactions() -> None:
    database = FakeDatabase()

    async def body(unit: UnitOfWork) -> None:
        raise PackageMovedMeanwhile

    with pytest.raises(StorageUnavailable):
        await run(database, body, attempts=3)
    assert database.ends == ["rollback"] * 3
    assert unit_of_work.MAX_ATTEMPTS == 4


async def test_a_failure_that_is_not_a_conflict_is_raised_at_once_without_hooks() -> None:
    database, ran = FakeDatabase(), []

    async def body(unit: UnitOfWork) -> None:
        async def hook() -> None:
            ran.append(True)

        unit.after_commit(hook)
        raise OutcomeUnknown("ConnectionDoesNotExistError")

    with pytest.raises(OutcomeUnknown):
        await run(database, body)
    assert database.ends == ["rollback"] and ran == []
