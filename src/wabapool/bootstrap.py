"""The composition root: the one place that reads the settings and wires the parts together.

    Settings (config.py, WABAPOOL_*)
      ├─ database(settings)           the SQLAlchemy engine (storage)
      ├─ sealer(settings, demo=...)   the PII key set; missing keys are refused outside --demo
      ├─ balance_cache(settings)      Redis when WABAPOOL_REDIS_URL is set, else in-process
      └─ billing_service(...)         the engine's use cases (service), the only `BillingService(...)` call
           ├─ app_context / create_app / serving_app     the HTTP API (`wabapool serve`)
           ├─ worker / opened_worker                     the outbox relay and cycle resets (`wabapool worker`)
           └─ opened_service / opened_database           the CLI verbs and the test fixtures

Every entry point gets its objects here; nothing else calls `Settings.from_env()`
or builds a `BillingService`. No default weakens security: the built-in
development PII key is used only when `demo=True` (the `--demo` wiring), and a
service is never built without a sealer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from wabapool.config import Settings
from wabapool.domain.limits import MAX_QUEUED_DEDUCTIONS_PER_POOL
from wabapool.pii import DEVELOPMENT_KEY_ID, DEVELOPMENT_KEYS, PiiKeyError, PiiSealer

# The layers load when a function first needs them, not with this module: every CLI command imports it, and
# `serve --workers N` re-imports the command in each server process before that process answers the
# supervisor's health check.
if TYPE_CHECKING:
    from fastapi import FastAPI

    from wabapool.api.context import AppContext
    from wabapool.cache import BalanceCache
    from wabapool.export_leases import RedisExportLeases
    from wabapool.rate_limit import PublicRateLimits
    from wabapool.service import BillingService
    from wabapool.service.context import AfterCommit, Clock, WriteThrough
    from wabapool.storage.database import Database
    from wabapool.worker.embedded import EmbeddedWorker
    from wabapool.worker.relay import RelayOptions
    from wabapool.worker.retry import RetrySchedule
    from wabapool.worker.runner import Worker

# Set by `serve --demo` for its server processes: they mount the demo's own webhook receiver.
DEMO_RECEIVER_VARIABLE = "WABAPOOL_DEMO_RECEIVER"


def settings() -> Settings:
    """The `WABAPOOL_*` environment, read once per entry point."""
    return Settings.from_env()


def demo_settings(configured: Settings, *, database_url: str) -> Settings:
    """`--demo`: a SQLite file, the built-in development PII key unless keys are set, throwaway credentials.

    The only place the development key enters a running process: every later step reads it from these
    settings, never falls back to it.
    """
    return dataclasses.replace(
        configured,
        webhook_allow_private=True,
        database_url=database_url,
        pii_keys=configured.pii_keys or DEVELOPMENT_KEYS,
        api_keys=configured.api_keys or f"demo:{secrets.token_urlsafe(24)}",
        jwt_secret=configured.jwt_secret
        if (configured.jwt_secret or configured.jwt_public_key)
        else secrets.token_urlsafe(32),
    )


def sealer(configured: Settings, *, demo: bool = False) -> PiiSealer:
    """The sealer of the configured key set. Outside demo (PiiKeyError): a missing `WABAPOOL_PII_KEYS`, or one
    that would seal with the public development key."""
    keys = _configured_sealer(configured, demo=demo)
    if not demo and keys.active_key_id == DEVELOPMENT_KEY_ID:
        # The built-in key is public (it is in the source): set explicitly it would seal real people's data
        # under a key anyone can read. Listed beside a key of one's own it only reads (its rows until rotated).
        raise PiiKeyError(
            "WABAPOOL_PII_KEYS holds only the public development key 'dev': set a key of your own "
            "(k1:$(openssl rand -base64 32)), or run with --demo"
        )
    return keys


def _configured_sealer(configured: Settings, *, demo: bool = False) -> PiiSealer:
    """The configured key set's sealer; missing keys are an error but in demo (the development key)."""
    if configured.pii_keys:
        return PiiSealer(configured.pii_keys)
    if demo:
        return PiiSealer(DEVELOPMENT_KEYS)
    raise PiiKeyError(
        "WABAPOOL_PII_KEYS is not set: personal data is never sealed with the built-in key outside --demo "
        "(set kid:base64-of-32-bytes, e.g. k1:$(openssl rand -base64 32))"
    )


def database(configured: Settings) -> Database:
    """The configured database (not connected until first used; the caller disposes it)."""
    from wabapool.storage.database import Database

    return Database(configured.database_url)


def migrate(configured: Settings, revision: str = "head") -> None:
    """Bring the configured database to `revision` (Alembic acts only when the schema is behind)."""
    from wabapool.storage.migrate import upgrade  # Alembic: loaded only by the processes that migrate

    upgrade(configured.database_url, revision)


def balance_cache(configured: Settings) -> BalanceCache:
    """Redis when configured (shared by every server process), else this process's own."""
    from wabapool.cache import InProcessCache, RedisCache

    if configured.redis_url:
        return RedisCache(configured.redis_url, ttl_seconds=configured.cache_ttl_seconds)
    return InProcessCache(ttl_seconds=configured.cache_ttl_seconds)


def billing_service(
    database: Database,
    *,
    sealer: PiiSealer,
    clock: Clock | None = None,
    after_commit: AfterCommit | None = None,
    write_through: WriteThrough | None = None,
    max_queued_per_pool: int = MAX_QUEUED_DEDUCTIONS_PER_POOL,
    waba_save_organization_id: bool = True,
) -> BillingService:
    """The engine's use cases on `database`, sealing with `sealer`; the hooks keep a balance cache current."""
    from wabapool.service import BillingService
    from wabapool.service.context import utc_now

    return BillingService(
        database,
        clock=clock or utc_now,
        sealer=sealer,
        after_commit=after_commit,
        write_through=write_through,
        max_queued_per_pool=max_queued_per_pool,
        waba_save_organization_id=waba_save_organization_id,
    )


def app_context(
    configured: Settings,
    *,
    database: Database | None = None,
    cache: BalanceCache | None = None,
    clock: Clock | None = None,
    max_queued_per_pool: int = MAX_QUEUED_DEDUCTIONS_PER_POOL,
    write_through: bool = True,
) -> AppContext:
    """The API's parts; the database, the cache, the clock and the queue bound are seams for tests.

    `write_through=False` makes every change only invalidate the cached balance (the way before the
    write-through, kept as the fallback): the benchmark measures one against the other.
    """
    from wabapool.api.context import AppContext
    from wabapool.security import ApiKeyRing, TokenVerifier
    from wabapool.service.balance_cache import CachedBalanceViews
    from wabapool.service.context import utc_now
    from wabapool.service.models import BalanceView
    from wabapool.service.reports import Reports
    from wabapool.storage.database import Database

    clock = clock or utc_now
    database = database or Database(configured.database_url)
    # `serve` vetted the key set before it started this process (cli.startup); here it must only be there.
    keys = _configured_sealer(configured)
    service_ref: list[BillingService] = []

    async def load(company_id: int) -> BalanceView:
        return await service_ref[0].balance(company_id)

    balances = CachedBalanceViews(
        cache or balance_cache(configured), load, db_timeout_seconds=configured.db_timeout_seconds
    )

    service = billing_service(
        database,
        clock=clock,
        sealer=keys,
        after_commit=balances.invalidate,
        write_through=balances.write_through if write_through else None,
        max_queued_per_pool=max_queued_per_pool,
        waba_save_organization_id=configured.waba_save_organization_id,
    )
    service_ref.append(service)
    tokens = None
    if configured.jwt_secret or configured.jwt_public_key:
        tokens = TokenVerifier(
            secret=configured.jwt_secret, public_key=configured.jwt_public_key, audience=configured.jwt_audience
        )
    return AppContext(
        service=service,
        reports=Reports(
            database,
            keys,
            clock=clock,
            exports_per_company=configured.exports_per_company,
            export_leases=export_leases(configured),
        ),
        balances=balances,
        api_keys=ApiKeyRing.from_spec(configured.api_keys),
        tokens=tokens,
        rate_limits=rate_limits(configured),
        webhook_allow_private=configured.webhook_allow_private,
        max_body_bytes=configured.max_body_bytes,
        body_timeout_seconds=configured.body_timeout_seconds,
        demo_receiver=os.environ.get(DEMO_RECEIVER_VARIABLE) == "true",
    )


def export_leases(configured: Settings) -> RedisExportLeases | None:
    """The per-company export limit across processes: leases in Redis when configured; in-process otherwise."""
    from wabapool.export_leases import RedisExportLeases

    return RedisExportLeases(configured.redis_url) if configured.redis_url else None


def rate_limits(configured: Settings) -> PublicRateLimits:
    """The public API's per-company and per-token buckets: in Redis when configured (shared), else in-process."""
    from wabapool.domain.rate import BucketRule
    from wabapool.rate_limit import Buckets, InProcessBuckets, PublicRateLimits, RedisBuckets

    buckets: Buckets = RedisBuckets(configured.redis_url) if configured.redis_url else InProcessBuckets()
    return PublicRateLimits(
        buckets,
        per_company=BucketRule(configured.rate_company_per_second, configured.rate_company_burst),
        per_token=BucketRule(configured.rate_token_per_second, configured.rate_token_burst),
    )


def create_app(configured: Settings | None = None, *, context: AppContext | None = None) -> FastAPI:
    """The HTTP app on `configured` (the environment when None), or around a context a test built."""
    from wabapool.api.app import create_app as create_api

    configured = configured or settings()
    return create_api(context or app_context(configured))


def serving_app() -> FastAPI:
    """The app as `wabapool serve` runs it in each server process: settings from the environment, GC tuned."""
    from wabapool.runtime import tune_gc

    app = create_app()
    tune_gc()
    return app


def run_server(*, host: str, port: int, workers: int) -> None:
    """`wabapool serve`'s server processes, each building the app from the environment (`serving_app`)."""
    import uvicorn

    from wabapool.api.slow_clients import HeaderTimeoutProtocol

    uvicorn.run(
        "wabapool.bootstrap:serving_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        http=HeaderTimeoutProtocol,  # cuts off a client whose headers never end (api/slow_clients.py)
    )


def relay_options(configured: Settings, *, retry: RetrySchedule | None = None) -> RelayOptions:
    """How the worker delivers: the retry schedule, the timeout, whether private addresses are allowed."""
    from wabapool.worker.relay import RelayOptions
    from wabapool.worker.retry import RetrySchedule

    return RelayOptions(
        retry=retry or RetrySchedule.of(configured.webhook_retry_seconds),
        timeout_seconds=configured.webhook_timeout_seconds,
        allow_private=configured.webhook_allow_private,
    )


def worker(configured: Settings, *, database: Database, service: BillingService) -> Worker:
    """A worker for these settings; `service` (with its cache invalidation) is the one resets go through."""
    from wabapool.worker.alerts import AlertSweeper
    from wabapool.worker.cycles import CycleScheduler
    from wabapool.worker.relay import Relay
    from wabapool.worker.runner import Worker

    relay = Relay(database, service.sealer, options=relay_options(configured))
    return Worker(
        relay,
        CycleScheduler(service),
        poll_seconds=configured.worker_poll_seconds,
        listen_url=configured.database_direct_url,
        sweeper=AlertSweeper(service),
    )


def cache_invalidator(configured: Settings) -> tuple[BalanceCache | None, AfterCommit | None]:
    """For processes beside the API (worker, CLI): drop a company's balance in the shared Redis cache.

    The in-process cache is the API's own, out of reach: without Redis there is nothing to drop.
    """
    if not configured.redis_url:
        return None, None
    from wabapool.cache import CacheUnavailable, RedisCache

    cache = RedisCache(configured.redis_url, ttl_seconds=configured.cache_ttl_seconds)

    async def invalidate(company_id: int) -> None:
        # If Redis is down the TTL bounds how stale the balance page gets.
        with contextlib.suppress(CacheUnavailable):
            await cache.delete(company_id)

    return cache, invalidate


@contextlib.asynccontextmanager
async def opened_database(configured: Settings | None = None) -> AsyncIterator[Database]:
    """The configured database for one command, disposed at the end."""
    opened = database(configured or settings())
    try:
        yield opened
    finally:
        await opened.dispose()


@contextlib.asynccontextmanager
async def opened_service(
    configured: Settings | None = None, *, clock: Clock | None = None, demo: bool = False
) -> AsyncIterator[BillingService]:
    """A service for one command or worker run: its database, its keys, the shared cache's invalidation."""
    configured = configured or settings()
    keys = sealer(configured, demo=demo)
    cache, invalidate = cache_invalidator(configured)
    async with opened_database(configured) as opened:
        try:
            yield billing_service(
                opened,
                sealer=keys,
                clock=clock,
                after_commit=invalidate,
                waba_save_organization_id=configured.waba_save_organization_id,
            )
        finally:
            if cache is not None:
                await cache.close()


@contextlib.asynccontextmanager
async def opened_worker(configured: Settings | None = None, *, demo: bool = False) -> AsyncIterator[Worker]:
    """A worker on its own database and service (resets drop the shared cached balance), closed at the end."""
    configured = configured or settings()
    async with opened_service(configured, demo=demo) as service:
        running = worker(configured, database=service.database, service=service)
        try:
            yield running
        finally:
            await running.relay.close()


def embedded_worker(configured: Settings) -> EmbeddedWorker:
    """`serve --demo`'s worker: a thread beside the server on the demo settings, started."""
    from wabapool.worker.embedded import EmbeddedWorker

    return EmbeddedWorker(lambda: opened_worker(configured, demo=True)).start()
