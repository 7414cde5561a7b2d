"""Everything a request needs, wired once per app by `wabapool.bootstrap.app_context`."""

from __future__ import annotations

from dataclasses import dataclass

from wabapool.domain.limits import BODY_READ_TIMEOUT_SECONDS
from wabapool.rate_limit import PublicRateLimits
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
    rate_limits: PublicRateLimits
    # A webhook URL may point at loopback or a private network (development and tests only).
    webhook_allow_private: bool = False
    # Requests larger than this are refused (413) before the body is read.
    max_body_bytes: int = 2 * 1024 * 1024
    # A request body must arrive within this long of the app asking for it (408).
    body_timeout_seconds: float = BODY_READ_TIMEOUT_SECONDS
    # `serve --demo`: mount the demo's own webhook receiver (/demo/webhooks).
    demo_receiver: bool = False

    async def close(self) -> None:
        """At shutdown: export threads and leases, the rate limits' and the cache's connections, then the database's."""
        await self.reports.close()
        await self.rate_limits.buckets.close()
        await self.balances.close()
        await self.service.database.dispose()
