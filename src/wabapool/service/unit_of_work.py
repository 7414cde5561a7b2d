"""The unit of work: one transaction, tried again on a conflict, committed, then its after-commit hooks.

Step 2 of the deduction path (the queue groups, this runs, the domain
decides). `run` opens the transaction and hands the body a `UnitOfWork`;
leaving the body normally commits, any exception rolls back. A conflict
(another writer committed first: a unique_code taken, a package moved) rolls
back and runs the body again, up to `MAX_ATTEMPTS`; the hooks the body
registered run only after its commit, never for an attempt that rolled back.

What is tried again, and why it is safe (nothing of the attempt was written):
- `CodeTakenMeanwhile`, or `UniqueConflict` from storage: a unique_code taken
  as new was applied meanwhile; the next attempt looks every code up first
  (`codes_taken`). A code taken again under the pool lock is a bug, raised.
- `PackageMovedMeanwhile`: a package locked by the body was closed (the
  backfill moved its WABAs); the next attempt finds the packages again.
A lost connection, a timeout or a failed commit is not a conflict: it is
raised as the storage error it is, for the caller to answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.storage.database import Database
from wabapool.storage.errors import StorageUnavailable, UniqueConflict

# Transactions one unit may take: again once when a unique_code turns out taken, again when a package it
# locked was closed meanwhile (a backfill or rollback of the company, rare). Past this, something keeps
# moving the company's packages: answer `unavailable` (nothing written) instead of spinning.
MAX_ATTEMPTS = 4

T = TypeVar("T")
Hook = Callable[[], Awaitable[None]]


class Conflict(Exception):
    """Another writer committed first: roll back and run the body again."""


class CodeTakenMeanwhile(Conflict):
    """A unique_code thought new was in the table: look the codes up this time."""


class PackageMovedMeanwhile(Conflict):
    """A package the body locked was closed (moved by the backfill): find the WABAs' packages again."""


@dataclass(slots=True)
class UnitOfWork:
    """One attempt's transaction, what the earlier attempts learnt, and what runs after the commit."""

    connection: AsyncConnection
    # An earlier attempt found a unique_code taken: every code is looked up before deciding.
    codes_taken: bool = False
    hooks: list[Hook] = field(default_factory=list)

    def after_commit(self, hook: Hook) -> None:
        """Run `hook` once this transaction has committed (never if it rolls back)."""
        self.hooks.append(hook)


async def run(
    database: Database,
    body: Callable[[UnitOfWork], Awaitable[T]],
    *,
    attempts: int = MAX_ATTEMPTS,
    codes_taken: bool = False,
) -> T:
    """`body` in one transaction, committed; again on a conflict; then the committed attempt's hooks.

    `codes_taken`: a write before this one found a code taken, so the first attempt looks them up already.
    """
    for _ in range(attempts):
        try:
            async with database.transaction() as connection:
                unit = UnitOfWork(connection, codes_taken)
                result = await body(unit)
        except UniqueConflict as exc:
            if codes_taken:
                # The pool lock serialises a company's deductions and the codes were looked up under it.
                raise RuntimeError("a unique_code was applied concurrently despite the pool lock") from exc
            codes_taken = True
            continue
        except CodeTakenMeanwhile:
            codes_taken = True
            continue
        except PackageMovedMeanwhile:
            continue
        for hook in unit.hooks:
            await hook()
        return result
    raise StorageUnavailable(f"the unit of work met a conflict in each of its {attempts} attempts")
