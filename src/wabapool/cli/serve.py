"""`wabapool serve`: the API (and the built page), optionally on a ready demo database."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
from pathlib import Path

from rich.console import Console

from wabapool.config import Settings

DEMO_DATABASE = Path("wabapool-demo.db")


async def _prepare_demo(settings: Settings) -> None:
    """A first run seeds the demo company with two weeks of history (the page's demo data); later runs keep it."""
    from wabapool.cli.demo import DEMO_COMPANY_ID, seed_page_demo
    from wabapool.pii import DEVELOPMENT_KEYS, PiiSealer
    from wabapool.service.provisioning import company_timezone
    from wabapool.storage.database import Database

    database = Database(settings.database_url)
    try:
        if await company_timezone(database, DEMO_COMPANY_ID) is None:
            # The same keys the app will read the personal data with.
            await seed_page_demo(database, sealer=PiiSealer(settings.pii_keys or DEVELOPMENT_KEYS))
    finally:
        await database.dispose()


def demo_settings(settings: Settings) -> Settings:
    """A SQLite file and, unless configured, throwaway credentials for this run; webhooks may go to loopback."""
    return dataclasses.replace(
        settings,
        webhook_allow_private=True,
        database_url=f"sqlite:///{DEMO_DATABASE.resolve()}",
        api_keys=settings.api_keys or f"demo:{secrets.token_urlsafe(24)}",
        jwt_secret=settings.jwt_secret
        if (settings.jwt_secret or settings.jwt_public_key)
        else secrets.token_urlsafe(32),
    )


def serve(*, demo: bool, host: str, port: int, migrate: bool, workers: int, console: Console) -> int:
    """Run the server; returns the exit code."""
    import uvicorn

    from wabapool.api.slow_clients import HeaderTimeoutProtocol
    from wabapool.security import issue_token
    from wabapool.service.pii_keys import startup_refusal
    from wabapool.storage.migrate import upgrade

    settings = Settings.from_env()
    if demo:
        settings = demo_settings(settings)
    if workers > 1 and not settings.redis_url:
        # Each worker would keep its own balance cache and never hear of the others' changes.
        console.print("[red]--workers above 1 needs WABAPOOL_REDIS_URL:[/] the balance cache must be shared")
        return 2
    if migrate or demo:
        # Alembic only acts when the schema is behind: a fresh SQLite file works at once.
        upgrade(settings.database_url)
    refusal = startup_refusal(settings, demo=demo)
    if refusal is not None:
        console.print(f"[red]refusing to start:[/] {refusal}", soft_wrap=True)
        return 2
    if demo:
        asyncio.run(_prepare_demo(settings))
        from wabapool.cli.demo import DEMO_COMPANY_ID

        api_key = settings.api_keys.split(",")[0].split(":", 1)[1]
        console.print(f"[bold]wabapool[/] demo on [cyan]http://{host}:{port}/[/] (database {DEMO_DATABASE})")
        console.print(f"internal API key (X-Api-Key): {api_key}")
        if settings.jwt_secret:
            token = issue_token(
                company_id=DEMO_COMPANY_ID,
                role="owner",
                secret=settings.jwt_secret,
                ttl_seconds=12 * 3600,
                audience=settings.jwt_audience,
            )
            console.print(f"owner token (Authorization: Bearer …): {token}", soft_wrap=True)
            console.print(f"page: http://{host}:{port}/#token={token}", soft_wrap=True)
    # Every worker builds the app from the environment: the same settings, demo ones included.
    os.environ.update(settings.to_env())
    embedded = None
    if demo:
        from wabapool.api.demo_webhooks import ENABLE_VARIABLE
        from wabapool.cli.demo import DEMO_COMPANY_ID
        from wabapool.worker.embedded import EmbeddedWorker, point_webhook

        os.environ[ENABLE_VARIABLE] = "true"
        receiver = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/demo/webhooks"
        asyncio.run(point_webhook(settings, DEMO_COMPANY_ID, receiver))
        console.print(f"worker running in this process; demo webhooks: {receiver} (GET lists the latest)")
        embedded = EmbeddedWorker(settings).start()
    try:
        uvicorn.run(
            "wabapool.api.app:serving_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
            http=HeaderTimeoutProtocol,  # cuts off a client whose headers never end (api/slow_clients.py)
        )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0
