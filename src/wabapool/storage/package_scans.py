"""The worker's scans of packages across companies: cycles that ended, auto-recharge requests left open.

The only statements on packages that do not name one company (the router test
allows each by name, with how it runs on Citus); each package found is then
handled in a transaction of its own that pins its company.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.storage.tables import organization_packages


async def due_package_ids(connection: AsyncConnection, *, at: datetime) -> list[tuple[int, int]]:
    """(company id, package id) of every open package whose cycle has ended by `at`, pools and WABAs' own alike.

    The one scan of every company's packages (a cross-company statement the router test allows by name).
    """
    p = organization_packages
    rows = await connection.execute(
        select(p.c.company_id, p.c.id)
        .where(p.c.closed_at.is_(None) & (p.c.cycle_end <= at))
        .order_by(organization_packages.c.company_id, organization_packages.c.id)
    )
    return [(row.company_id, row.id) for row in rows]


async def expired_top_up_requests(
    connection: AsyncConnection, *, requested_by: datetime, limit: int
) -> list[tuple[int, int]]:
    """(company id, package id) of open packages whose auto-recharge request was raised at or before
    `requested_by` (oldest first), across companies: each is then expired in its company's transaction."""
    p = organization_packages
    rows = await connection.execute(
        select(p.c.company_id, p.c.id)
        .where(p.c.top_up_reference.is_not(None) & (p.c.top_up_requested_at <= requested_by) & p.c.closed_at.is_(None))
        .order_by(p.c.top_up_requested_at)
        .limit(limit)
    )
    return [(int(row.company_id), int(row.id)) for row in rows]
