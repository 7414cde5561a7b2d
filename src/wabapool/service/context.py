"""What every use case works with: the database, the clock, the PII sealer, and the after-commit hooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from wabapool.pii import PiiSealer
from wabapool.service.balance_view import written_view
from wabapool.service.models import BalanceView
from wabapool.storage.database import Database
from wabapool.storage.versions import Written

# The one clock type: every use case, the worker and the reports take the time from an injected clock.
Clock = Callable[[], datetime]
AfterCommit = Callable[[int], Awaitable[None]]
# Given the company's balance as a write left it; answers for its own failures (it falls back to AfterCommit's work).
WriteThrough = Callable[[int, BalanceView], Awaitable[None]]


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """The edges of the service, injected (the clock too: tests move it by hand)."""

    database: Database
    clock: Clock
    sealer: PiiSealer
    after_commit: AfterCommit | None = None
    write_through: WriteThrough | None = None
    # The feature flag's global default: a new WABA of a v3 company joins the pool (on) or gets its own package.
    waba_save_organization_id: bool = True

    async def changed(self, company_id: int, written: Sequence[Written] = ()) -> None:
        """After commit, before returning: hand the cache the company's new balance, or drop the cached one.

        A write that returned what its pools became (`write_changes`) and tells
        the company's whole view is written through; any other change (no
        figures given, a view the write cannot tell) drops the cached balance.
        """
        view = written_view(company_id, written) if self.write_through is not None else None
        if view is not None and self.write_through is not None:
            await self.write_through(company_id, view)
        elif self.after_commit is not None:
            await self.after_commit(company_id)
