"""What every use case works with: the database, the clock, the PII sealer, and the after-commit hook."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from wabapool.pii import PiiSealer
from wabapool.storage.database import Database

Clock = Callable[[], datetime]
AfterCommit = Callable[[int], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """The edges of the service, injected (the clock too: tests move it by hand)."""

    database: Database
    clock: Clock
    sealer: PiiSealer
    after_commit: AfterCommit | None = None
    # The feature flag's global default: a new WABA of a v3 company joins the pool (on) or gets its own package.
    waba_save_organization_id: bool = True

    async def changed(self, company_id: int) -> None:
        """After commit, before returning: drop the company's cached balance."""
        if self.after_commit is not None:
            await self.after_commit(company_id)
