"""`wabapool statements --company-id N`: the company's closed cycles, one statement each."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from wabapool.config import Settings

console = Console()


async def _statements(company_id: int, limit: int) -> tuple[list[Any], str]:
    from wabapool.storage import companies as company_store
    from wabapool.storage import statements as statement_store
    from wabapool.storage.database import Database

    database = Database(Settings.from_env().database_url)
    try:
        async with database.read() as connection:
            company = await company_store.get_company(connection, company_id)
            rows = await statement_store.list_statements(connection, company_id, limit=limit)
        return list(rows), company.timezone if company else "UTC"
    finally:
        await database.dispose()


def statements_command(
    company_id: Annotated[int, typer.Option("--company-id", help="The company.")],
    limit: Annotated[int, typer.Option(min=1, max=120, help="Newest cycles first, at most this many.")] = 12,
) -> None:
    """Statements of closed cycles: opening and closing per bucket, spend, deductions (minor units)."""
    rows, timezone = asyncio.run(_statements(company_id, limit))
    zone = ZoneInfo(timezone)
    table = Table(title=f"company {company_id}: {len(rows)} statements (cycle dates in {timezone})")
    columns = ("cycle", "initial open→close", "additional open→close", "postpaid used open→close")
    for column in (*columns, "total open→close", "spent", "deductions", "by WABA"):
        table.add_column(column, overflow="fold")
    for row in rows:
        opening_total = row.opening_initial_minor + row.opening_additional_minor - row.opening_postpaid_used_minor
        closing_total = row.closing_initial_minor + row.closing_additional_minor - row.closing_postpaid_used_minor
        table.add_row(
            f"{row.cycle_start.astimezone(zone).date()} – {row.cycle_end.astimezone(zone).date()}",
            f"{row.opening_initial_minor} → {row.closing_initial_minor}",
            f"{row.opening_additional_minor} → {row.closing_additional_minor}",
            f"{row.opening_postpaid_used_minor} → {row.closing_postpaid_used_minor}",
            f"{opening_total} → {closing_total}",
            f"{row.spent_minor} {row.currency}",
            str(row.deductions_count),
            ", ".join(f"{waba}: {amount}" for waba, amount in sorted(row.spent_by_waba.items())),
        )
    console.print(table)
