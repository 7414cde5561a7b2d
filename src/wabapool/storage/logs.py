"""Deduction logs for the Package Usage page and CSV: keyset pages, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.storage.tables import deduction_requests, outbox_events, refunds, whatsapp_packages


async def deduction_page(
    connection: AsyncConnection,
    company_id: int,
    *,
    waba_id: str | None,
    since: datetime | None,
    until: datetime | None,
    category: str | None,
    broadcast_id: str | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Any]:
    """Up to `limit` rows older than the `after` keyset (created_at, id), newest first."""
    d = deduction_requests
    conditions = [d.c.company_id == company_id]
    if waba_id is not None:
        conditions.append(d.c.waba_id == waba_id)
    if since is not None:
        conditions.append(d.c.created_at >= since)
    if until is not None:
        conditions.append(d.c.created_at < until)
    if category is not None:
        conditions.append(d.c.category == category)
    if broadcast_id is not None:
        conditions.append(d.c.broadcast_id == broadcast_id)
    if after is not None:
        created_at, row_id = after
        conditions.append(or_(d.c.created_at < created_at, and_(d.c.created_at == created_at, d.c.id < row_id)))
    query = (
        select(
            d.c.id,
            d.c.created_at,
            d.c.unique_code,
            d.c.waba_id,
            whatsapp_packages.c.name.label("waba_name"),
            d.c.broadcast_id,
            d.c.message_id,
            d.c.category,
            d.c.deduction_code,
            d.c.quantity,
            d.c.unit_price_minor,
            d.c.amount_minor,
            d.c.credited_to,
            d.c.allocations,
            d.c.customer_name_enc,
            d.c.phone_number_enc,
            (refunds.c.id.is_not(None)).label("refunded"),
        )
        .select_from(
            d.outerjoin(
                whatsapp_packages,
                and_(whatsapp_packages.c.company_id == d.c.company_id, whatsapp_packages.c.waba_id == d.c.waba_id),
            ).outerjoin(refunds, refunds.c.deduction_request_id == d.c.id)
        )
        .where(and_(*conditions))
        .order_by(d.c.created_at.desc(), d.c.id.desc())
        .limit(limit)
    )
    return list(await connection.execute(query))


async def event_page(
    connection: AsyncConnection, company_id: int, *, after: tuple[datetime, int] | None, limit: int
) -> list[Any]:
    """Up to `limit` outbox events older than the `after` keyset (created_at, id), newest first.

    Every column is read, so delivery columns another revision adds (a dead-letter mark) are seen too.
    """
    e = outbox_events
    conditions = [e.c.company_id == company_id]
    if after is not None:
        created_at, row_id = after
        conditions.append(or_(e.c.created_at < created_at, and_(e.c.created_at == created_at, e.c.id < row_id)))
    query = select(e).where(and_(*conditions)).order_by(e.c.created_at.desc(), e.c.id.desc()).limit(limit)
    return list(await connection.execute(query))
