"""`wabapool` — operator and developer commands."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from wabapool.config import Settings

app = typer.Typer(help="wabapool: one shared balance pool for every WABA of a company.", no_args_is_help=True)
console = Console()


@app.command()
def migrate(revision: Annotated[str, typer.Option(help="Alembic revision to upgrade to.")] = "head") -> None:
    """Bring the configured database (WABAPOOL_DATABASE_URL) to the latest schema."""
    from wabapool.storage.migrate import upgrade

    settings = Settings.from_env()
    upgrade(settings.database_url, revision)
    console.print(f"[green]migrated[/] to {revision}")


@app.command()
def demo(
    database: Annotated[Path, typer.Option(help="SQLite file to create afresh.")] = Path("wabapool-demo.db"),
) -> None:
    """Provision a demo company and run a broadcast, a top-up and refunds against one pool."""
    from wabapool.cli.demo import demo as run

    if not run(database, console):
        raise typer.Exit(1)


@app.command()
def reconcile() -> None:
    """Check every company's buckets against its ledger; exit 1 on any violation."""
    from wabapool.service.reconcile import reconcile as run
    from wabapool.storage.database import Database

    async def check() -> bool:
        database = Database(Settings.from_env().database_url)
        try:
            report = await run(database)
        finally:
            await database.dispose()
        for name, count in report.checks.items():
            console.print(f"checked {count} {name}")
        for violation in report.violations:
            console.print(f"[red]violation:[/] {violation}")
        console.print("[green]reconcile ok[/]" if report.ok else f"[red]{len(report.violations)} violations[/]")
        return report.ok

    if not asyncio.run(check()):
        raise typer.Exit(1)
