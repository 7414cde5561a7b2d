"""`wabapool statements --company-id N`: the company's closed cycles, one statement each."""

from __future__ import annotations

import asyncio
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from wabapool import bootstrap
from wabapool.cli.errors import COMPANY_ID_MAX
from wabapool.service.statements import StatementView

console = Console()


async def _statements(company_id: int, limit: int) -> tuple[list[StatementView], str]:
    from wabapool.service import statements
    from wabapool.service.provisioning import company_timezone

    async with bootstrap.opened_database() as database:
        rows = await statements.list_statements(database, company_id, limit=limit)
        return rows, await company_timezone(database, company_id) or "UTC"


def statements_command(
    company_id: Annotated[int, typer.Option("--company-id", min=1, max=COMPANY_ID_MAX, help="The company.")],
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
        opening, closing = row.opening, row.closing
        table.add_row(
            f"{row.cycle_start.astimezone(zone).date()} – {row.cycle_end.astimezone(zone).date()}",
            f"{opening.initial_remaining} → {closing.initial_remaining}",
            f"{opening.additional_remaining} → {closing.additional_remaining}",
            f"{opening.postpaid_used} → {closing.postpaid_used}",
            f"{opening.total} → {closing.total}",
            f"{row.spent_minor} {row.currency}",
            str(row.deductions_count),
            ", ".join(f"{waba}: {amount}" for waba, amount in sorted(row.spent_by_waba.items())),
        )
    console.print(table)
