"""`wabapool worker`: deliver webhooks and run the monthly reset until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from wabapool import bootstrap
from wabapool.config import Settings
from wabapool.pii import PiiKeyError

if TYPE_CHECKING:
    from wabapool.service import BillingService

console = Console(stderr=True)


async def run_worker(settings: Settings, *, once: bool = False) -> int:
    """Run until a signal (or one round with `once`); returns how many events the rounds handled."""
    async with bootstrap.opened_worker(settings) as worker:
        await _preflight(worker.scheduler.service if worker.scheduler else None, once=once)
        if once:
            return await worker.run_once()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await worker.run(stop)
        return 0


async def _preflight(service: BillingService | None, *, once: bool) -> None:
    """Reads that need the schema, before the rounds (which log and retry every failure): a missing
    schema or database, bad credentials or a malformed URL end the command with one line (cli/errors.py);
    a key set that lacks a key the stored webhook secrets are sealed under is refused (PiiKeyError), as
    `serve` refuses it. A database that is only unreachable now is waited for, like any outage, unless this
    is one round; the key check is then not made, and an event whose secret cannot be opened fails alone."""
    from wabapool.cli.errors import unreachable
    from wabapool.service.pii_keys import check_keys_to_read

    if service is None:  # a worker without cycle resets: nothing to read before its rounds
        return
    try:
        await service.any_cycle_due(at=datetime.now(UTC))
        await check_keys_to_read(service.database, service.sealer)
    except Exception as exc:
        if once or not unreachable(exc):
            raise


def worker_command(
    once: Annotated[bool, typer.Option("--once", help="One round (due events, due resets), then exit.")] = False,
) -> None:
    """Deliver outbox events as Standard Webhooks (retries, dead letters) and run the monthly cycle resets."""
    from wabapool.runtime import configure_logging

    configure_logging()  # JSON lines, WABAPOOL_LOG_LEVEL, as the API logs
    settings = bootstrap.settings()
    try:
        # Webhook secrets and personal data are sealed with these keys: none, a malformed set or the public
        # development key (outside --demo) is refused before the first round, as `serve` refuses it.
        bootstrap.sealer(settings)
    except PiiKeyError as exc:
        console.print(f"[red]refusing to start:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(
        f"[bold]wabapool worker[/] polling every {settings.worker_poll_seconds:g} s, "
        f"{len(settings.webhook_retry_seconds)} retries, timeout {settings.webhook_timeout_seconds:g} s"
    )
    try:
        handled = asyncio.run(run_worker(settings, once=once))
    except PiiKeyError as exc:  # the stored data needs a key this set lacks (_preflight)
        console.print(f"[red]refusing to start:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    if once:
        console.print(f"handled {handled} events")
