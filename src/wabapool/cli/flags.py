"""`wabapool flags`: the `waba_save_organization_id` feature flag of a company (its override of the default).

On (the default, `WABAPOOL_WABA_SAVE_ORGANIZATION_ID`), a new WABA of a v3
company joins the company's pool; off, it gets a package of its own, as in
v2. A company's override wins over the default; `default` clears it. The flag
shapes only WABAs provisioned after it changes: moving existing ones is the
backfill's job.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import typer
from rich.console import Console

from wabapool import bootstrap
from wabapool.cli._checks import require_pii_keys
from wabapool.cli.errors import COMPANY_ID_MAX

flags_app = typer.Typer(help="Feature flags of a company.", no_args_is_help=True)
console = Console()
_VALUES: dict[str, bool | None] = {"on": True, "off": False, "default": None}


async def _flag(company_id: int, value: bool | None, *, change: bool) -> str:
    from wabapool.domain.errors import BillingError

    async with bootstrap.opened_service() as service:
        try:
            flag = await (
                service.set_waba_save_flag(company_id, value) if change else service.waba_save_flag(company_id)
            )
        except BillingError as error:
            console.print(f"[red]{error.message}[/red] (company {company_id})")
            raise typer.Exit(code=1) from error
    override = "default" if flag.override is None else ("on" if flag.override else "off")
    where = "join the pool" if flag.effective else "get their own package"
    return f"company {company_id} ({flag.billing_version}): waba_save_organization_id = {override}; new WABAs {where}"


@flags_app.command("show")
def show(
    company_id: Annotated[int, typer.Option("--company-id", min=1, max=COMPANY_ID_MAX, help="The company.")],
) -> None:
    """The company's `waba_save_organization_id`: its override, and where its new WABAs go."""
    require_pii_keys(console)
    console.print(asyncio.run(_flag(company_id, None, change=False)))


@flags_app.command("set")
def set_flag(
    value: Annotated[Literal["on", "off", "default"], typer.Argument(help="on, off, or default (clear the override).")],
    company_id: Annotated[int, typer.Option("--company-id", min=1, max=COMPANY_ID_MAX, help="The company.")],
) -> None:
    """Set the company's `waba_save_organization_id` override (new WABAs only)."""
    require_pii_keys(console)
    console.print(asyncio.run(_flag(company_id, _VALUES[value], change=True)))
