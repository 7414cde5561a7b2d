"""Everything a request needs, built once per app from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from wabapool.cache import BalanceCache, CachedBalances, InProcessCache, RedisCache, Versioned
from wabapool.config import Settings
from wabapool.domain.limits import MAX_QUEUED_DEDUCTIONS_PER_POOL
from wabapool.domain.rate import BucketRule
from wabapool.pii import DEVELOPMENT_KEYS, PiiSealer
from wabapool.rate_limit import Buckets, InProcessBuckets, PublicRateLimits, RedisBuckets
from wabapool.security import ApiKeyRing, TokenVerifier
from wabapool.service import BillingService
from wabapool.service.context import Clock, utc_now
from wabapool.service.models import BalanceView
from wabapool.service.reports import Reports
from wabapool.storage.database import Database


@dataclass
class AppContext:
    settings: Settings
    database: Database
    service: BillingService
    reports: Reports
    balances: CachedBalances
    api_keys: ApiKeyRing
    tokens: TokenVerifier | None
    rate_limits: PublicRateLimits

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        database: Database | None = None,
        cache: BalanceCache | None = None,
        clock: Clock = utc_now,
        max_queued_per_pool: int = MAX_QUEUED_DEDUCTIONS_PER_POOL,
        write_through: bool = True,
    ) -> AppContext:
        """The app's parts; the database, the cache, the clock and the queue bound are seams for tests.

        `write_through=False` makes every change only invalidate the cached balance (the way before the
        write-through, kept as the fallback): the benchmark measures one against the other.
        """
        from wabapool.api.balance import billing_info

        database = database or Database(settings.database_url)
        sealer = PiiSealer(settings.pii_keys or DEVELOPMENT_KEYS)
        if cache is None:
            cache = (
                RedisCache(settings.redis_url, ttl_seconds=settings.cache_ttl_seconds)
                if settings.redis_url
                else InProcessCache(ttl_seconds=settings.cache_ttl_seconds)
            )
        service_ref: list[BillingService] = []

        async def load(company_id: int) -> Versioned:
            view = await service_ref[0].balance(company_id)
            return Versioned(billing_info(view), view.version)

        balances = CachedBalances(cache, load, db_timeout_seconds=settings.db_timeout_seconds)

        async def written(company_id: int, view: BalanceView) -> None:
            await balances.write_through(company_id, Versioned(billing_info(view), view.version))

        service = BillingService(
            database,
            clock=clock,
            sealer=sealer,
            after_commit=balances.invalidate,
            write_through=written if write_through else None,
            max_queued_per_pool=max_queued_per_pool,
            waba_save_organization_id=settings.waba_save_organization_id,
        )
        service_ref.append(service)
        tokens = None
        if settings.jwt_secret or settings.jwt_public_key:
            tokens = TokenVerifier(
                secret=settings.jwt_secret, public_key=settings.jwt_public_key, audience=settings.jwt_audience
            )
        buckets: Buckets = RedisBuckets(settings.redis_url) if settings.redis_url else InProcessBuckets()
        return cls(
            settings=settings,
            database=database,
            service=service,
            reports=Reports(database, sealer, clock=clock, exports_per_company=settings.exports_per_company),
            rate_limits=PublicRateLimits(
                buckets,
                per_company=BucketRule(settings.rate_company_per_second, settings.rate_company_burst),
                per_token=BucketRule(settings.rate_token_per_second, settings.rate_token_burst),
            ),
            balances=balances,
            api_keys=ApiKeyRing.from_spec(settings.api_keys),
            tokens=tokens,
        )
