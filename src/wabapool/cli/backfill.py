"""`wabapool backfill`: move v2 companies (one package per WABA) to v3 (one pool), or roll one back.

    wabapool backfill (--company-id N | --all) [--dry-run]
    wabapool backfill --rollback --company-id N [--dry-run] [--confirm]

Exit codes: 0 done (or nothing to do), 1 a verification or reconcile failed,
or a rollback needs `--confirm`, 2 the options do not make sense.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wabapool import bootstrap
from wabapool.cli._checks import require_pii_keys
from wabapool.cli.errors import COMPANY_ID_MAX
from wabapool.domain.errors import BillingError
from wabapool.domain.pool import Buckets
from wabapool.service.backfill import CompanyPlan, Money, Verification
from wabapool.service.backfill_rollback import RollbackPlan
from wabapool.service.context import ServiceContext

console = Console()
# Past this many companies the run prints one summary, not a table per company.
TABLES_MAX_COMPANIES = 20

_BUCKET_COLUMNS = ("allowance", "used", "initial", "additional", "postpaid limit", "postpaid used", "total")


def _figures(buckets: Buckets) -> list[str]:
    return [
        str(value)
        for value in (
            buckets.initial_allowance,
            buckets.initial_used,
            buckets.initial_remaining,
            buckets.additional_remaining,
            buckets.postpaid_limit,
            buckets.postpaid_used,
            buckets.total,
        )
    ]


def plan_table(plan: CompanyPlan) -> Table:
    """The dry run of one company: each package's buckets, and the pool they become."""
    pool_name = "new pool" if plan.new_pool else f"pool #{plan.packages[0].package_id}"
    table = Table(
        title=f"company {plan.company_id} ({plan.billing_version} → v3, {plan.currency} minor units): "
        f"{pool_name}, cycle from {plan.cycle_label} (anchor day {plan.anchor_day})"
    )
    table.add_column("package")
    table.add_column("WABAs")
    for column in _BUCKET_COLUMNS:
        table.add_column(column, justify="right")
    for package in plan.packages:
        name = f"pool #{package.package_id}" if package.is_pool else f"#{package.package_id}"
        table.add_row(name, ", ".join(package.waba_ids) or "-", *_figures(package.buckets))
    table.add_row("→ pool", "all", *_figures(plan.pool_after), style="bold")
    return table


def _money_row(table: Table, name: str, before: Money, after: Money) -> None:
    table.add_row(name, *(f"{b} → {a}" + ("" if b == a else " ✗") for b, a in zip(before, after, strict=True)))


def verification_table(plans: Sequence[CompanyPlan]) -> Table:
    """Per company (or summed, for many): WABAs on the pool, each bucket's money before → after."""
    table = Table(title="verification")
    for column in ("company", "initial", "additional", "postpaid used", "total"):
        table.add_column(column, justify="right")
    checked = [plan.verification for plan in plans if plan.verification is not None]
    if len(plans) <= TABLES_MAX_COMPANIES:
        for plan in plans:
            if plan.verification is not None:
                _money_row(table, str(plan.company_id), plan.verification.before, plan.verification.after)
    if checked:
        before = Money(*map(sum, zip(*(v.before for v in checked), strict=True)))
        after = Money(*map(sum, zip(*(v.after for v in checked), strict=True)))
        _money_row(table, "all moved", before, after)
    return table


def _summary(plans: Sequence[CompanyPlan]) -> bool:
    checked: list[Verification] = [plan.verification for plan in plans if plan.verification is not None]
    wabas = sum(v.wabas for v in checked)
    on_pool = sum(v.wabas_on_pool for v in checked)
    conserved = all(v.money_conserved for v in checked)
    console.print(verification_table(plans))
    percent = 100 if not wabas else 100 * on_pool // wabas
    console.print(
        f"moved {len(checked)} companies ({len(plans) - len(checked)} had nothing to move); "
        f"WABAs on the pool: {on_pool}/{wabas} ({percent}%); "
        f"money conserved: {'yes' if conserved else '[red]NO[/]'}"
    )
    return conserved and on_pool == wabas


async def _reconciled(context: ServiceContext) -> bool:
    from wabapool.service.reconcile import reconcile

    report = await reconcile(context.database)
    for violation in report.violations:
        console.print(f"[red]violation:[/] {violation}")
    checks = ", ".join(f"{count} {name}" for name, count in report.checks.items())
    console.print(f"reconcile: {'[green]ok[/]' if report.ok else '[red]FAILED[/]'} ({checks})")
    return report.ok


async def run_backfill(context: ServiceContext, company_ids: Sequence[int] | None, *, dry_run: bool) -> bool:
    """Plan or move the companies (None: every company with a WABA on a package of its own); True when all verified."""
    from wabapool.service import backfill

    ids = list(company_ids) if company_ids is not None else await backfill.companies_to_move(context)
    if dry_run:
        for company_id in ids:
            console.print(plan_table(await backfill.plan_company(context, company_id)))
        console.print(f"dry run: {len(ids)} companies, nothing written")
        return True
    columns = (TextColumn("backfill"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=len(ids) <= 1) as progress:
        task = progress.add_task("companies", total=len(ids))
        refused: list[tuple[int, BillingError]] = []

        def tell_refused(company_id: int, refusal: BillingError) -> None:
            refused.append((company_id, refusal))
            progress.advance(task)

        plans = await backfill.backfill_all(
            context, ids, on_company=lambda _: progress.advance(task), on_refused=tell_refused
        )
    for company_id, refusal in refused:
        console.print(f"[red]company {company_id} not moved:[/] {refusal.code}: {escape(str(refusal))}", soft_wrap=True)
    return _summary(plans) and await _reconciled(context) and not refused


def rollback_table(plan: RollbackPlan) -> Table:
    """Each package's money: what it brought to the pool → what it gets back, per bucket."""
    kind = "exact" if plan.exact else "split (the pool changed since the backfill)"
    table = Table(title=f"rollback of company {plan.company_id}, pool #{plan.pool_id}: {kind}")
    for column in ("package", "WABA", "initial", "additional", "postpaid used", "allowance", "postpaid limit"):
        table.add_column(column, justify="right")
    for part in plan.parts:
        brought, share = part.brought, part.share
        table.add_row(
            f"#{part.package_id}",
            part.waba_id or "-",
            *(
                f"{b} → {s}"
                for b, s in (
                    (brought.initial_remaining, share.initial_remaining),
                    (brought.additional_remaining, share.additional_remaining),
                    (brought.postpaid_used, share.postpaid_used),
                    (brought.initial_allowance, share.initial_allowance),
                    (brought.postpaid_limit, share.postpaid_limit),
                )
            ),
        )
    after = plan.pool_after
    pool_keeps = (after.initial_remaining, after.additional_remaining, after.postpaid_used)
    table.add_row("pool (closes)", "", *map(str, pool_keeps), str(after.initial_allowance), str(after.postpaid_limit))
    return table


async def run_rollback(context: ServiceContext, company_id: int, *, dry_run: bool, confirm: bool) -> bool:
    """Show, and unless a dry run write, the rollback; a split is written only with `confirm`."""
    from wabapool.service import backfill_rollback

    if dry_run:
        plan = await backfill_rollback.plan_rollback(context, company_id)
    else:
        plan = await backfill_rollback.rollback_company(context, company_id, confirm=confirm)
    console.print(rollback_table(plan))
    console.print(f"money conserved: {'yes' if plan.money_conserved else '[red]NO[/]'}")
    if plan.applied:
        console.print(f"[green]rolled back[/] company {plan.company_id}")
        return await _reconciled(context)
    if dry_run:
        console.print("dry run: nothing written")
        return True
    console.print("[yellow]the split above needs --confirm[/]; nothing written")
    return False


def backfill_command(
    company_id: Annotated[
        int | None, typer.Option("--company-id", min=1, max=COMPANY_ID_MAX, help="The company to move.")
    ] = None,
    all_companies: Annotated[
        bool, typer.Option("--all", help="Every company with a WABA on a package of its own.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing.")] = False,
    rollback: Annotated[bool, typer.Option("--rollback", help="Move a company back to v2 (--company-id).")] = False,
    confirm: Annotated[bool, typer.Option("--confirm", help="Write a rollback that splits the balance.")] = False,
) -> None:
    """Move v2 companies into one shared pool each (or roll one back), verified and reconciled."""
    if (company_id is None) == (not all_companies) or (rollback and company_id is None):
        console.print("[red]say --company-id N or --all (--rollback takes --company-id)[/]")
        raise typer.Exit(2)
    require_pii_keys(console)
    if not asyncio.run(_run(company_id, dry_run=dry_run, rollback=rollback, confirm=confirm)):
        raise typer.Exit(1)


async def _run(company_id: int | None, *, dry_run: bool, rollback: bool, confirm: bool) -> bool:
    async with bootstrap.opened_service() as service:
        try:
            if rollback and company_id is not None:
                return await run_rollback(service.context, company_id, dry_run=dry_run, confirm=confirm)
            return await run_backfill(service.context, None if company_id is None else [company_id], dry_run=dry_run)
        except BillingError as error:
            console.print(f"[red]{error.code}:[/] {escape(str(error))}", soft_wrap=True)
            return False
