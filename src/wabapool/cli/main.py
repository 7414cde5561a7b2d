"""`wabapool` — operator and developer commands."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from wabapool import bootstrap
from wabapool.cli.backfill import backfill_command
from wabapool.cli.bench import bench_app
from wabapool.cli.errors import COMPANY_ID_MAX, OperatorErrors
from wabapool.cli.events import events_app
from wabapool.cli.flags import flags_app
from wabapool.cli.pii import pii_app
from wabapool.cli.statements import statements_command
from wabapool.cli.worker import worker_command

app = typer.Typer(
    help="wabapool: one shared balance pool for every WABA of a company.", no_args_is_help=True, cls=OperatorErrors
)
console = Console()
app.add_typer(bench_app, name="bench")
app.add_typer(pii_app, name="pii")


@app.command()
def migrate(revision: Annotated[str, typer.Option(help="Alembic revision to upgrade to.")] = "head") -> None:
    """Bring the configured database (WABAPOOL_DATABASE_URL) to the latest schema."""
    bootstrap.migrate(bootstrap.settings(), revision)
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

    async def check() -> bool:
        async with bootstrap.opened_database() as database:
            report = await run(database)
        for name, count in report.checks.items():
            console.print(f"checked {count} {name}")
        for violation in report.violations:
            console.print(f"[red]violation:[/] {violation}")
        console.print("[green]reconcile ok[/]" if report.ok else f"[red]{len(report.violations)} violations[/]")
        return report.ok

    if not asyncio.run(check()):
        raise typer.Exit(1)


@app.command()
def serve(
    demo: Annotated[bool, typer.Option("--demo", help="SQLite demo database, provisioned when empty.")] = False,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    migrate: Annotated[bool, typer.Option(help="Bring the schema to the latest revision first.")] = True,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes (above 1 needs WABAPOOL_REDIS_URL for the shared cache).")
    ] = 1,
) -> None:
    """Serve the internal and public APIs and the Package Usage page."""
    from wabapool.cli.serve import serve as run

    code = run(demo=demo, host=host, port=port, migrate=migrate, workers=workers, console=console)
    if code:
        raise typer.Exit(code)


@app.command()
def token(
    company_id: Annotated[
        int, typer.Option("--company-id", min=1, max=COMPANY_ID_MAX, help="The company the token speaks for.")
    ],
    role: Annotated[str, typer.Option(help="owner, admin, supervisor, agent or member.")] = "owner",
    ttl_seconds: Annotated[int, typer.Option(help="Lifetime of the token.")] = 3600,
) -> None:
    """Print a signed JWT (WABAPOOL_JWT_SECRET, or WABAPOOL_JWT_PRIVATE_KEY for RS256) for development."""
    import os

    from wabapool.security import issue_token

    settings = bootstrap.settings()
    private_key = os.environ.get("WABAPOOL_JWT_PRIVATE_KEY")
    if not settings.jwt_secret and not private_key:
        console.print("[red]set WABAPOOL_JWT_SECRET (HS256) or WABAPOOL_JWT_PRIVATE_KEY (RS256)[/]")
        raise typer.Exit(2)
    try:
        signed = issue_token(
            company_id=company_id,
            role=role,
            secret=None if private_key else settings.jwt_secret,
            private_key=private_key,
            ttl_seconds=ttl_seconds,
            audience=settings.jwt_audience,
        )
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    typer.echo(signed)


@app.command()
def simulate(
    url: Annotated[str, typer.Option(help="Base URL of a running `wabapool serve`.")],
    api_key: Annotated[str, typer.Option("--api-key", envvar="WABAPOOL_API_KEY", help="Internal X-Api-Key.")],
    messages: Annotated[int, typer.Option(help="Messages to broadcast.")] = 2_000,
    concurrency: Annotated[int, typer.Option(help="Concurrent senders.")] = 16,
) -> None:
    """Run the demo broadcast against a server over HTTP with the client SDK."""
    from wabapool.cli.simulate import run_simulation

    asyncio.run(run_simulation(url, api_key, messages=messages, concurrency=concurrency, console=console))


app.command("worker")(worker_command)
app.command("backfill")(backfill_command)
app.add_typer(events_app, name="events")
app.add_typer(flags_app, name="flags")
app.command("statements")(statements_command)

if __name__ == "__main__":
    app()
