"""Aggregate queries that let `reconcile` compare balances with the ledger.

Operator scans of every company (the router test allows them by name); their joins and groups name the
company, so on Citus each runs on every shard in parallel with no data moved between nodes.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.storage.tables import (
    billing_components,
    deduction_requests,
    ledger_entries,
    organization_packages,
    quota_buckets,
    refunds,
)
from wabapool.storage.types import Record


async def bucket_balances(connection: AsyncConnection) -> list[Record]:
    """Every bucket's stored value and limit, with its company."""
    query = (
        select(
            organization_packages.c.company_id,
            organization_packages.c.id.label("package_id"),
            quota_buckets.c.quota_type,
            quota_buckets.c.balance_minor,
            quota_buckets.c.limit_minor,
        )
        .select_from(
            quota_buckets.join(
                billing_components,
                (billing_components.c.company_id == quota_buckets.c.company_id)
                & (billing_components.c.id == quota_buckets.c.billing_component_id),
            ).join(
                organization_packages,
                (organization_packages.c.company_id == billing_components.c.company_id)
                & (organization_packages.c.id == billing_components.c.organization_package_id),
            )
        )
        .order_by(organization_packages.c.company_id, quota_buckets.c.quota_type)
    )
    return list(await connection.execute(query))


async def ledger_bucket_sums(connection: AsyncConnection) -> dict[tuple[int, str], int]:
    """Sum of every entry's bucket change, per package and bucket."""
    change = ledger_entries.c.bucket_after_minor - ledger_entries.c.bucket_before_minor
    rows = await connection.execute(
        select(ledger_entries.c.organization_package_id, ledger_entries.c.quota_type, func.sum(change)).group_by(
            ledger_entries.c.company_id, ledger_entries.c.organization_package_id, ledger_entries.c.quota_type
        )
    )
    return {(row[0], row[1]): int(row[2]) for row in rows}


async def deductions_not_matching_entries(connection: AsyncConnection) -> list[Record]:
    """Deductions whose ledger portions do not add up to their amount (or appear twice)."""
    portions = (
        select(
            ledger_entries.c.company_id,
            ledger_entries.c.deduction_request_id.label("deduction_id"),
            func.coalesce(func.sum(-ledger_entries.c.amount_minor), 0).label("taken"),
            func.count().label("entries"),
        )
        .where(ledger_entries.c.kind == "deduction")
        .group_by(ledger_entries.c.company_id, ledger_entries.c.deduction_request_id)
        .subquery()
    )
    query = (
        select(
            deduction_requests.c.company_id,
            deduction_requests.c.unique_code,
            deduction_requests.c.amount_minor,
            func.coalesce(portions.c.taken, 0).label("taken"),
            func.coalesce(portions.c.entries, 0).label("entries"),
            func.json_array_length(deduction_requests.c.allocations).label("allocations"),
        )
        .select_from(
            deduction_requests.outerjoin(
                portions,
                (portions.c.company_id == deduction_requests.c.company_id)
                & (portions.c.deduction_id == deduction_requests.c.id),
            )
        )
        .where(
            (func.coalesce(portions.c.taken, 0) != deduction_requests.c.amount_minor)
            | (func.coalesce(portions.c.entries, 0) != func.json_array_length(deduction_requests.c.allocations))
        )
    )
    return list(await connection.execute(query))


async def refunds_not_matching_entries(connection: AsyncConnection) -> list[Record]:
    credited = (
        select(
            ledger_entries.c.company_id,
            ledger_entries.c.deduction_request_id.label("deduction_id"),
            func.sum(ledger_entries.c.amount_minor).label("credited"),
        )
        .where(ledger_entries.c.kind == "refund")
        .group_by(ledger_entries.c.company_id, ledger_entries.c.deduction_request_id)
        .subquery()
    )
    query = (
        select(
            refunds.c.company_id,
            refunds.c.refund_code,
            refunds.c.amount_minor,
            func.coalesce(credited.c.credited, 0).label("credited"),
        )
        .select_from(
            refunds.outerjoin(
                credited,
                (credited.c.company_id == refunds.c.company_id)
                & (credited.c.deduction_id == refunds.c.deduction_request_id),
            )
        )
        .where(func.coalesce(credited.c.credited, 0) != refunds.c.amount_minor)
    )
    return list(await connection.execute(query))


async def unique_codes_applied_twice(connection: AsyncConnection) -> list[Record]:
    query = (
        select(deduction_requests.c.company_id, deduction_requests.c.unique_code, func.count().label("times"))
        .group_by(deduction_requests.c.company_id, deduction_requests.c.unique_code)
        .having(func.count() > 1)
    )
    return list(await connection.execute(query))


async def deduction_count(connection: AsyncConnection) -> int:
    return int((await connection.execute(select(func.count()).select_from(deduction_requests))).scalar_one())
