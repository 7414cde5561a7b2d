"""Everything a request needs, wired once per app by `wabapool.bootstrap.app_context`."""

from __future__ import annotations

from dataclasses import dataclass

from wabapool.security import ApiKeyRing, TokenVerifier
from wabapool.service import BillingService
from wabapool.service.balance_cache import CachedBalanceViews
from wabapool.service.reports import Reports


@dataclass
class AppContext:
    service: BillingService
    reports: Reports
    balances: CachedBalanceViews
    api_keys: ApiKeyRing
    tokens: TokenVerifier | None
    # A webhook URL may point at loopback or a private network (development and tests only).
    webhook_allow_private: bool = False
    # Requests larger than this are refused (413) before the body is read.
    max_body_bytes: int = 2 * 1024 * 1024
    # `serve --demo`: mount the demo's own webhook receiver (/demo/webhooks).
    demo_receiver: bool = False

    async def close(self) -> None:
        """At shutdown: the export threads, the cache's connections, then the database's."""
        self.reports.close()
        await self.balances.close()
        await self.service.database.dispose()
