"""WABAs' spending caps: read with the deduction's lock held, set and audited, their capped spend recomputed.

Every writer of a cap or of a capped spend holds the lock of the package the
WABA charges (the deduction's group, a refund, a cap change), so a read made
after taking that lock sees the last committed figures.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import BigInteger, String, and_, any_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Select

from wabapool.domain.caps import CapState, SpendCap
from wabapool.domain.json_types import JSONValue
from wabapool.storage import pg
from wabapool.storage.tables import (
    deduction_requests,
    organization_packages,
    refunds,
    waba_cycle_spend,
    waba_spend_cap_changes,
    waba_spend_caps,
    whatsapp_packages,
)
from wabapool.storage.types import ColumnValues
from wabapool.storage.upsert import insert_for

_c = waba_spend_caps.c
_s = waba_cycle_spend.c


def stored_cap(amount_minor: int, categories: JSONValue, warn_percent: int) -> SpendCap:
    """A cap from its columns (`categories` as JSON text when read through the driver, which leaves json as text)."""
    if isinstance(categories, str):
        categories = json.loads(categories)
    return SpendCap(int(amount_minor), None if categories is None else frozenset(categories), int(warn_percent))


def cap_of(row: ColumnValues) -> SpendCap:
    """A stored cap row's cap."""
    return stored_cap(row["amount_minor"], row["categories"], row["warn_percent"])


def _caps_query(
    company_ids: ColumnElement[bool], waba_ids: ColumnElement[bool], cycle_starts: ColumnElement[bool]
) -> Select[tuple[object, ...]]:
    return (
        select(
            _c.company_id,
            _c.waba_id,
            _c.amount_minor,
            _c.categories,
            _c.warn_percent,
            _c.warned_cycle_start,
            _c.reached_cycle_start,
            _s.cycle_start,
            _s.capped_spent_minor,
        )
        .select_from(
            waba_spend_caps.outerjoin(
                waba_cycle_spend,
                and_(_s.company_id == _c.company_id, _s.waba_id == _c.waba_id, cycle_starts),
            )
        )
        .where(company_ids & waba_ids)
    )


_CAPS_PG = pg.compile_statement(
    _caps_query(
        _c.company_id == any_(bindparam("company_ids", type_=ARRAY(BigInteger))),
        _c.waba_id == any_(bindparam("waba_ids", type_=ARRAY(String))),
        _s.cycle_start == any_(bindparam("cycle_starts", type_=ARRAY(_s.cycle_start.type))),
    )
)


async def caps_in_cycles(
    connection: AsyncConnection, cycle_of: Mapping[tuple[int, str], datetime]
) -> dict[tuple[int, str], CapState]:
    """The caps of these (company, WABA)s that have one, each with its capped spend in the cycle given for it.

    One statement for the whole group (of one company or many); called with the packages' locks held.
    """
    if not cycle_of:
        return {}
    companies = sorted({company for company, _ in cycle_of})
    wabas = sorted({waba for _, waba in cycle_of})
    starts = sorted(set(cycle_of.values()))
    rows: Sequence[ColumnValues]
    if pg.is_postgresql(connection):
        rows = await pg.fetch(connection, _CAPS_PG, company_ids=companies, waba_ids=wabas, cycle_starts=starts)
    else:
        query = _caps_query(_c.company_id.in_(companies), _c.waba_id.in_(wabas), _s.cycle_start.in_(starts))
        rows = (await connection.execute(query)).mappings().all()
    found: dict[tuple[int, str], CapState] = {}
    for row in rows:
        key = (row["company_id"], row["waba_id"])
        if key not in cycle_of:
            continue  # a WABA id of the group in another company of it (ids are global: never, but exact anyway)
        waba_id = row["waba_id"]
        cycle_start = cycle_of[key]
        spent = row["capped_spent_minor"] if row["cycle_start"] == cycle_start else None
        if spent is None and key in found:
            continue  # a spend row of another package's cycle; this WABA's own is read on its other row
        found[key] = CapState(
            waba_id,
            cap_of(row),
            spent_minor=spent or 0,
            warned=row["warned_cycle_start"] == cycle_start,
            reached=row["reached_cycle_start"] == cycle_start,
        )
    return found


class CapFlags(NamedTuple):
    """In which cycle a WABA's warning and reach were raised (None: not in the current one)."""

    waba_id: str
    warned_cycle_start: datetime | None
    reached_cycle_start: datetime | None


_SET_FLAGS = (
    update(waba_spend_caps)
    .where((_c.company_id == bindparam("f_company_id")) & (_c.waba_id == bindparam("f_waba_id")))
    .values(warned_cycle_start=bindparam("f_warned"), reached_cycle_start=bindparam("f_reached"))
)


async def save_flags(connection: AsyncConnection, company_id: int, flags: Sequence[CapFlags]) -> None:
    """Remember which cap events this cycle raised (rare: at most two per WABA and cycle)."""
    if flags:
        await connection.execute(
            _SET_FLAGS,
            [{"f_company_id": company_id, "f_waba_id": f.waba_id, "f_warned": f[1], "f_reached": f[2]} for f in flags],
        )


async def company_caps(connection: AsyncConnection, company_id: int) -> dict[str, tuple[SpendCap, dict[datetime, int]]]:
    """Every cap of the company, with its WABA's capped spend per cycle (the balance view picks the current one)."""
    rows = (
        await connection.execute(
            select(_c.waba_id, _c.amount_minor, _c.categories, _c.warn_percent, _s.cycle_start, _s.capped_spent_minor)
            .select_from(
                waba_spend_caps.outerjoin(
                    waba_cycle_spend, and_(_s.company_id == _c.company_id, _s.waba_id == _c.waba_id)
                )
            )
            .where(_c.company_id == company_id)
        )
    ).mappings()
    caps: dict[str, tuple[SpendCap, dict[datetime, int]]] = {}
    for row in rows:
        _, spent = caps.setdefault(row["waba_id"], (cap_of(row), {}))
        if row["cycle_start"] is not None:
            spent[row["cycle_start"]] = row["capped_spent_minor"]
    return caps


async def get_cap(connection: AsyncConnection, company_id: int, waba_id: str) -> SpendCap | None:
    query = select(waba_spend_caps).where((_c.company_id == company_id) & (_c.waba_id == waba_id))
    row = (await connection.execute(query)).mappings().first()
    return None if row is None else cap_of(row)


async def put_cap(connection: AsyncConnection, company_id: int, waba_id: str, cap: SpendCap, *, at: datetime) -> None:
    """Set the WABA's cap (its events already raised this cycle stay raised)."""
    values = cap.as_json()
    statement = insert_for(connection, waba_spend_caps).values(
        company_id=company_id,
        waba_id=waba_id,
        amount_minor=cap.amount_minor,
        categories=values["categories"],
        warn_percent=cap.warn_percent,
        updated_at=at,
    )
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=["company_id", "waba_id"],
            set_={
                "amount_minor": statement.excluded.amount_minor,
                "categories": statement.excluded.categories,
                "warn_percent": statement.excluded.warn_percent,
                "updated_at": statement.excluded.updated_at,
            },
        )
    )
    await mark_capped_packages(connection, company_id, [waba_id])


async def mark_capped_packages(connection: AsyncConnection, company_id: int, waba_ids: Sequence[str]) -> None:
    """Flag the packages these WABAs charge, where a WABA has a cap (`organization_packages.spend_caps`).

    Called by every writer that gives a WABA a cap or points a WABA at a package, in its transaction:
    a deduction's group reads caps only for packages so flagged. The flag is never cleared (a cap
    removed costs the group one read, a missing flag would charge past a cap).
    """
    if not waba_ids:
        return
    w = whatsapp_packages.c
    capped_packages = (
        select(w.organization_package_id)
        .join_from(whatsapp_packages, waba_spend_caps, (_c.company_id == w.company_id) & (_c.waba_id == w.waba_id))
        .where((w.company_id == company_id) & w.waba_id.in_(list(waba_ids)))
    )
    p = organization_packages.c
    await connection.execute(
        update(organization_packages)
        .where((p.company_id == company_id) & p.id.in_(capped_packages) & p.spend_caps.is_(False))
        .values(spend_caps=True)
    )


async def delete_cap(connection: AsyncConnection, company_id: int, waba_id: str) -> None:
    await connection.execute(delete(waba_spend_caps).where((_c.company_id == company_id) & (_c.waba_id == waba_id)))


async def record_change(
    connection: AsyncConnection,
    *,
    company_id: int,
    waba_id: str,
    changed_by: str,
    old: SpendCap | None,
    new: SpendCap | None,
    at: datetime,
) -> None:
    """The audit row of one cap change."""
    await connection.execute(
        waba_spend_cap_changes.insert().values(
            company_id=company_id,
            change_id=str(uuid.uuid4()),
            waba_id=waba_id,
            changed_by=changed_by[:200],
            old_cap=None if old is None else old.as_json(),
            new_cap=None if new is None else new.as_json(),
            changed_at=at,
        )
    )


async def cap_changes(connection: AsyncConnection, company_id: int, waba_id: str) -> list[ColumnValues]:
    """The WABA's cap changes, oldest first."""
    w = waba_spend_cap_changes.c
    rows = await connection.execute(
        select(waba_spend_cap_changes)
        .where((w.company_id == company_id) & (w.waba_id == waba_id))
        .order_by(w.changed_at, w.change_id)
    )
    return list(rows.mappings())


async def recompute_capped_spend(
    connection: AsyncConnection, *, company_id: int, waba_id: str, cycle_start: datetime, cap: SpendCap
) -> int:
    """Set the WABA's capped spend in this cycle from its deductions (a cap set or changed); returns it.

    What the cap covers among the cycle's deductions not refunded: a refund
    lowers the cycle's spend by the deduction's amount, so a refunded one counts
    for nothing. Read under the package's lock, so no deduction of the WABA
    runs meanwhile. A message without a category counts against every cap.
    """
    d = deduction_requests.c
    covered = [d.company_id == company_id, d.waba_id == waba_id, d.cycle_start == cycle_start]
    covered.append(d.created_at >= cycle_start)  # lets the (company, WABA, created_at) index bound the scan
    if cap.categories is not None:
        covered.append(or_(d.category.is_(None), d.category.in_(sorted(cap.categories))))
    not_refunded = ~select(refunds.c.id).where(refunds.c.deduction_request_id == d.id).exists()
    spent = (
        await connection.execute(select(func.coalesce(func.sum(d.amount_minor), 0)).where(and_(*covered, not_refunded)))
    ).scalar_one()
    statement = insert_for(connection, waba_cycle_spend).values(
        company_id=company_id, waba_id=waba_id, cycle_start=cycle_start, spent_minor=0, capped_spent_minor=spent
    )
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=["company_id", "waba_id", "cycle_start"],
            set_={"capped_spent_minor": statement.excluded.capped_spent_minor},
        )
    )
    return int(spent)
