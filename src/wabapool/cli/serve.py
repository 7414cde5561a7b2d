"""`wabapool serve`: the API (and the built page), optionally on a ready demo database."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from rich.console import Console

from wabapool import bootstrap
from wabapool.cli.startup import startup_refusal
from wabapool.config import Settings

DEMO_DATABASE = Path("wabapool-demo.db")


async def _prepare_demo(settings: Settings, receiver: str) -> None:
    """A first run seeds the demo company with two weeks of history (the page's demo data); later runs keep it.

    Then the company's webhook points at the app's own receiver, with a fresh secret.
    """
    from wabapool.cli.demo import DEMO_COMPANY_ID, seed_page_demo
    from wabapool.service.provisioning import company_timezone

    async with bootstrap.opened_service(settings, demo=True) as service:
        if await company_timezone(service.database, DEMO_COMPANY_ID) is None:
            await seed_page_demo(service)
        await service.set_webhook(DEMO_COMPANY_ID, url=receiver)


def _print_demo_credentials(settings: Settings, *, host: str, port: int, console: Console) -> None:
    from wabapool.cli.demo import DEMO_COMPANY_ID
    from wabapool.security import issue_token

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


def serve(*, demo: bool, host: str, port: int, migrate: bool, workers: int, console: Console) -> int:
    """Run the server; returns the exit code."""
    settings = bootstrap.settings()
    if demo:
        settings = bootstrap.demo_settings(settings, database_url=f"sqlite:///{DEMO_DATABASE.resolve()}")
    if workers > 1 and not settings.redis_url:
        # Each worker would keep its own balance cache and never hear of the others' changes.
        console.print("[red]--workers above 1 needs WABAPOOL_REDIS_URL:[/] the balance cache must be shared")
        return 2
    if migrate or demo:
        # Alembic only acts when the schema is behind: a fresh SQLite file works at once.
        bootstrap.migrate(settings)
    refusal = startup_refusal(settings, demo=demo)
    if refusal is not None:
        console.print(f"[red]refusing to start:[/] {refusal}", soft_wrap=True)
        return 2
    # Every server process builds the app from the environment: the same settings, demo ones included.
    os.environ.update(settings.to_env())
    embedded = None
    if demo:
        receiver = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/demo/webhooks"
        asyncio.run(_prepare_demo(settings, receiver))
        _print_demo_credentials(settings, host=host, port=port, console=console)
        os.environ[bootstrap.DEMO_RECEIVER_VARIABLE] = "true"
        console.print(f"worker running in this process; demo webhooks: {receiver} (GET lists the latest)")
        embedded = bootstrap.embedded_worker(settings)
    try:
        bootstrap.run_server(host=host, port=port, workers=workers)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0
