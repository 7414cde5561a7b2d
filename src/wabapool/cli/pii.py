"""`wabapool pii rotate`: re-seal every personal value under the newest key, with a progress bar."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from wabapool import bootstrap

pii_app = typer.Typer(help="Personal data at rest: key rotation.", no_args_is_help=True)
console = Console()


@pii_app.command()
def rotate(
    page_rows: Annotated[int, typer.Option(min=1, max=10_000, help="Rows re-sealed per transaction.")] = 500,
) -> None:
    """Re-seal every value under the last key of WABAPOOL_PII_KEYS and re-key the hashes; resumable."""
    from wabapool.pii import PiiKeyError
    from wabapool.service.pii_keys import rotate as run

    settings = bootstrap.settings()
    try:
        sealer = bootstrap.sealer(settings)
    except PiiKeyError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc

    async def go() -> None:
        columns = (TextColumn("re-sealing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        async with bootstrap.opened_database(settings) as database:
            with Progress(*columns, console=console) as progress:
                task = progress.add_task("rows", total=None)
                report = await run(
                    database,
                    sealer,
                    page_rows=page_rows,
                    on_start=lambda total: progress.update(task, total=total),
                    on_page=lambda rows: progress.advance(task, rows),
                )
        resumed = f" (resumed after row {report.resumed_after_id})" if report.resumed_after_id else ""
        console.print(
            f"[green]rotated[/]{resumed}: {report.rows_seen} rows read, {report.rows_changed} re-sealed or re-keyed; "
            f"sealing key {report.seal_key_id!r}, hash key {report.hash_key_id!r}"
        )

    try:
        asyncio.run(go())
    except PiiKeyError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
