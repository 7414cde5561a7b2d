"""The queries of the backfill (v2 → v3) and its rollback: which packages moved, and what the ledger says they brought.

Money itself moves through `changes.write_changes` like every other change;
here are only the rows around it: closing and reopening packages, finding
the companies still to move, and the `migration` entries a rollback reads.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from wabapool.domain.pool import MoveKind, QuotaType
from wabapool.storage.tables import ledger_entries, organization_packages


def migration_reference(package_id: int) -> str:
    """The reference of every `migration` entry that moves one package's money: it names the package."""
    return f"migration:package:{package_id}"


async def companies_to_move(connection: AsyncConnection) -> list[int]:
    """Companies with a WABA on a package of its own (v2, or v3 with the flag off), in id order.

    An operator's scan of every company (`wabapool backfill --all`; the router test allows it by name).
    """
    p = organization_packages
    rows = await connection.execute(
        select(p.c.company_id)
        .where(p.c.waba_id.is_not(None) & p.c.closed_at.is_(None))
        .group_by(p.c.company_id)
        .order_by(p.c.company_id)
    )
    return [row.company_id for row in rows]


async def open_package_ids(connection: AsyncConnection, company_id: int) -> list[int]:
    """The company's open packages (pool and WABAs' own), read without a lock: the caller locks them by id."""
    p = organization_packages
    rows = await connection.execute(
        select(p.c.id).where((p.c.company_id == company_id) & p.c.closed_at.is_(None)).order_by(p.c.id)
    )
    return [row.id for row in rows]


async def set_closed(
    connection: AsyncConnection,
    company_id: int,
    package_ids: Collection[int],
    *,
    closed_at: datetime | None,
    at: datetime,
) -> None:
    """Close these packages of the company at `closed_at` (never charged again), or reopen them with None."""
    if package_ids:
        await connection.execute(
            update(organization_packages)
            .where(
                (organization_packages.c.company_id == company_id) & organization_packages.c.id.in_(sorted(package_ids))
            )
            .values(closed_at=closed_at, updated_at=at)
        )


async def last_moved(connection: AsyncConnection, company_id: int) -> tuple[datetime, list[int]] | None:
    """When the company's last backfill ran and the WABA packages it closed then (id order); None if never."""
    p = organization_packages
    closed_at = (
        await connection.execute(
            select(func.max(p.c.closed_at)).where(
                (p.c.company_id == company_id) & p.c.waba_id.is_not(None) & p.c.closed_at.is_not(None)
            )
        )
    ).scalar_one_or_none()
    if closed_at is None:
        return None
    rows = await connection.execute(
        select(p.c.id)
        .where((p.c.company_id == company_id) & p.c.waba_id.is_not(None) & (p.c.closed_at == closed_at))
        .order_by(p.c.id)
    )
    return closed_at, [row.id for row in rows]


async def package_created_at(connection: AsyncConnection, company_id: int, package_id: int) -> datetime:
    p = organization_packages
    return (  # type: ignore[no-any-return]
        await connection.execute(select(p.c.created_at).where((p.c.company_id == company_id) & (p.c.id == package_id)))
    ).scalar_one()


def _migration_entries(company_id: int, at: datetime) -> ColumnElement[bool]:
    e = ledger_entries
    return and_(e.c.company_id == company_id, e.c.kind == MoveKind.MIGRATION.value, e.c.created_at == at)


async def moved_out(
    connection: AsyncConnection, company_id: int, package_ids: Collection[int], *, at: datetime
) -> dict[int, dict[QuotaType, int]]:
    """What each package gave up to the pool in the backfill at `at`: stored value per bucket, from its entries."""
    e = ledger_entries
    rows = await connection.execute(
        select(e.c.organization_package_id, e.c.quota_type, func.sum(e.c.bucket_before_minor - e.c.bucket_after_minor))
        .where(_migration_entries(company_id, at) & e.c.organization_package_id.in_(sorted(package_ids)))
        .group_by(e.c.organization_package_id, e.c.quota_type)
    )
    brought: dict[int, dict[QuotaType, int]] = {package_id: {} for package_id in package_ids}
    for package_id, quota_type, amount in rows:
        brought[package_id][QuotaType(quota_type)] = int(amount)
    return brought


async def changed_since(connection: AsyncConnection, company_id: int, pool_id: int, *, at: datetime) -> bool:
    """Whether the pool has any entry but the backfill's since the backfill at `at` (deduction, refund, payment…).

    An entry on the pool after the backfill's got a larger id: the pool was
    locked (or not yet visible) until the backfill committed. With no
    migration entry at all (nothing moved), its time is the bound instead.
    """
    e = ledger_entries
    last_id = (
        await connection.execute(select(func.max(e.c.id)).where(_migration_entries(company_id, at)))
    ).scalar_one_or_none()
    bound = e.c.created_at >= at if last_id is None else e.c.id > last_id
    query = (
        select(e.c.id)
        .where(
            (e.c.company_id == company_id)
            & (e.c.organization_package_id == pool_id)
            & (e.c.kind != MoveKind.MIGRATION.value)
            & bound
        )
        .limit(1)
    )
    return (await connection.execute(query)).first() is not None
