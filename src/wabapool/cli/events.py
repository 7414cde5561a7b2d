"""`wabapool events list | dead | replay EVENT_ID`: the outbox and its dead letters, for operators."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from wabapool import bootstrap
from wabapool.cli.errors import COMPANY_ID_MAX
from wabapool.service.events import EventView

events_app = typer.Typer(help="Outbox events and their webhook delivery: list, dead letters, replay.")
console = Console()

CompanyOption = Annotated[
    int | None, typer.Option("--company-id", min=1, max=COMPANY_ID_MAX, help="Only this company's events.")
]
LimitOption = Annotated[int, typer.Option(min=1, max=1000, help="Newest first, at most this many.")]


def _stamp(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else ""


async def _rows(*, company_id: int | None, state: str | None, limit: int) -> list[EventView]:
    from wabapool.service import events

    async with bootstrap.opened_database() as database:
        return list(
            await events.list_events(
                database, company_id=company_id, state=events.DeliveryState(state) if state else None, limit=limit
            )
        )


def _table(title: str, rows: list[EventView]) -> Table:
    """Every cell as literal Text: a receiver's answer (`[/]`, `[bold red]…[/blue]`) is never read as markup."""
    table = Table(title=title)
    table.add_column("event id", no_wrap=True, min_width=36)
    for column in ("company", "type", "created (UTC)", "state", "attempts", "status", "last error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = (
            row.event_id,
            str(row.company_id),
            row.event_type,
            _stamp(row.created_at),
            row.state.value,
            str(row.attempts),
            "" if row.last_status is None else str(row.last_status),
            (row.last_error or "")[:80],
        )
        table.add_row(*(Text(cell) for cell in cells))
    return table


@events_app.command("list")
def list_events(
    company_id: CompanyOption = None,
    state: Annotated[
        str | None, typer.Option(help="pending, delivered, dead or skipped (skipped: no webhook when it came up).")
    ] = None,
    limit: LimitOption = 50,
) -> None:
    """Events newest first with their delivery state."""
    if state is not None and state not in ("pending", "delivered", "dead", "skipped"):
        console.print("[red]--state is pending, delivered, dead or skipped[/]")
        raise typer.Exit(2)
    rows = asyncio.run(_rows(company_id=company_id, state=state, limit=limit))
    console.print(_table(f"{len(rows)} events", rows))


@events_app.command("dead")
def dead(company_id: CompanyOption = None, limit: LimitOption = 50) -> None:
    """Dead letters: events whose last attempt failed (or whose receiver answered 410)."""
    rows = asyncio.run(_rows(company_id=company_id, state="dead", limit=limit))
    console.print(_table(f"{len(rows)} dead letters", rows))


async def _replay(event_id: str) -> tuple[bool, EventView | None]:
    from wabapool.service import events

    async with bootstrap.opened_database() as database:
        return await events.replay(database, event_id, at=datetime.now(UTC))


@events_app.command("replay")
def replay(event_id: Annotated[str, typer.Argument(help="The event id (the webhook-id receivers saw).")]) -> None:
    """Queue a dead (or skipped) event again, with its original id; the worker sends it on its next round."""
    replayed, row = asyncio.run(_replay(event_id))
    if row is None:
        console.print(f"[red]no event {escape(event_id)}[/]")
        raise typer.Exit(1)
    if not replayed:
        console.print(f"[red]event {escape(event_id)} is not a dead letter[/] (it is {_state(row)})")
        raise typer.Exit(1)
    console.print(f"[green]queued again[/] {escape(event_id)} ({row.event_type}, company {row.company_id})")


def _state(row: EventView) -> str:
    return str(row.state.value)
