"""The end of every pool write: raise each pool's version and read back what its balance view is built from.

`write_changes` calls `bump_versions` last, still under the pools' locks, so
the version is the pool's own ordering of committed changes (a transaction
that locks the pool after this one commits reads this version and writes the
next). With it come the company's WABAs (name, spend in the pool's current
cycle), read after this transaction's own spend upsert: with the new pool
state that is everything `billings/info` shows, so the caller can write the
new balance through to the cache without reading it again. On PostgreSQL it is
one statement (an `UPDATE … RETURNING` in a CTE, joined), and the same UPDATE
writes the package row's state of every pool whose state moved (`_moved_state`):
a group whose pools crossed a threshold sends no statement per pool for it.
SQLite takes two statements, the state written before by `pools.save_pool_state`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement, Grouping
from sqlalchemy.sql.selectable import CTE, Select

from wabapool.domain.caps import SpendCap
from wabapool.domain.operations import PoolState
from wabapool.storage import pg
from wabapool.storage.caps import stored_cap
from wabapool.storage.pools import LockedPool, package_state_values, row_state_moved
from wabapool.storage.tables import organization_packages, waba_cycle_spend, waba_spend_caps, whatsapp_packages
from wabapool.storage.types import ColumnValues


class WabaFigures(NamedTuple):
    """One WABA of the company as the balance view shows it."""

    waba_id: str
    name: str
    spent_this_cycle_minor: int
    package_id: int | None  # the package the WABA charges: a view of one pool holds only if it is this one
    spend_cap: SpendCap | None = None
    cap_spent_minor: int = 0


class Written(NamedTuple):
    """What one pool became in a committed write: its new state, its version, its WABAs, as of `at`."""

    pool: LockedPool
    after: PoolState
    version: int
    wabas: tuple[WabaFigures, ...]
    at: datetime


def _figures(versions_of: CTE | Table, spent_now: CTE | None = None) -> Select[tuple[object, ...]]:
    """The version and every WABA (name, spend in the pool's cycle) of each package in `versions_of`.

    `spent_now`, when given, is the spend upsert of the same statement (its RETURNING rows): a statement does
    not see its own CTEs' writes in the table, so the spend it just wrote comes from there.
    """
    joined = versions_of.outerjoin(
        whatsapp_packages, whatsapp_packages.c.company_id == versions_of.c.company_id
    ).outerjoin(
        waba_cycle_spend,
        and_(
            waba_cycle_spend.c.company_id == whatsapp_packages.c.company_id,
            waba_cycle_spend.c.waba_id == whatsapp_packages.c.waba_id,
            waba_cycle_spend.c.cycle_start == versions_of.c.cycle_start,
        ),
    )
    joined = joined.outerjoin(
        waba_spend_caps,
        and_(
            waba_spend_caps.c.company_id == whatsapp_packages.c.company_id,
            waba_spend_caps.c.waba_id == whatsapp_packages.c.waba_id,
        ),
    )
    spent: ColumnElement[int] = waba_cycle_spend.c.spent_minor
    capped: ColumnElement[int] = waba_cycle_spend.c.capped_spent_minor
    if spent_now is not None:
        joined = joined.outerjoin(
            spent_now,
            and_(
                spent_now.c.company_id == whatsapp_packages.c.company_id,
                spent_now.c.waba_id == whatsapp_packages.c.waba_id,
                spent_now.c.cycle_start == versions_of.c.cycle_start,
            ),
        )
        spent = func.coalesce(spent_now.c.spent_minor, waba_cycle_spend.c.spent_minor)
        capped = func.coalesce(spent_now.c.capped_spent_minor, waba_cycle_spend.c.capped_spent_minor)
    return (
        select(
            versions_of.c.id.label("package_id"),
            versions_of.c.version,
            whatsapp_packages.c.waba_id,
            whatsapp_packages.c.name,
            whatsapp_packages.c.organization_package_id.label("waba_package_id"),
            spent.label("spent_minor"),
            capped.label("capped_spent_minor"),
            waba_spend_caps.c.amount_minor.label("cap_amount_minor"),
            waba_spend_caps.c.categories.label("cap_categories"),
            waba_spend_caps.c.warn_percent.label("cap_warn_percent"),
        )
        .select_from(joined)
        # The order `companies.list_wabas` gives the view.
        .order_by(versions_of.c.id, whatsapp_packages.c.created_at, whatsapp_packages.c.id)
    )


# The package row's state columns a write may move (`pools.save_pool_state` writes the same on SQLite), each
# with the type of its array parameter `moved_<column>`; `alerts_fired` (json) goes as text, cast back.
_STATE_COLUMNS: dict[str, Any] = {
    "cycle_start": organization_packages.c.cycle_start.type,
    "cycle_end": organization_packages.c.cycle_end.type,
    "cycle_anchor_day": SmallInteger,
    "funded_base_minor": BigInteger,
    "low_balance_armed": Boolean,
    "below_zero_cycle_start": organization_packages.c.below_zero_cycle_start.type,
    "alerts_fired": Text,
    "top_up_reference": String,
    "top_up_amount_minor": BigInteger,
    "top_up_requested_at": organization_packages.c.top_up_requested_at.type,
    "top_ups_requested": SmallInteger,
}


def _moved_state() -> dict[str, ColumnElement[Any]]:
    """SET clauses writing the moved state of the packages listed in `moved_package_ids` (one array per state
    column, side by side) and leaving every other package's columns as they are: the pool state rides on the
    version bump, so a group whose pools crossed a threshold sends no statement per pool for it."""
    position = func.array_position(bindparam("moved_package_ids", type_=ARRAY(BigInteger)), organization_packages.c.id)
    values: dict[str, ColumnElement[Any]] = {}
    for name, column_type in _STATE_COLUMNS.items():
        # Parenthesised: `$1::bigint[][n]` would read as a type, `($1::bigint[])[n]` is the element.
        value: ColumnElement[Any] = Grouping(bindparam(f"moved_{name}", type_=ARRAY(column_type)))[position]
        if name == "alerts_fired":
            value = cast(value, JSON)
        values[name] = case((position.is_(None), organization_packages.c[name]), else_=value)
    values["updated_at"] = case(
        (position.is_(None), organization_packages.c.updated_at),
        else_=bindparam("moved_at", type_=organization_packages.c.updated_at.type),
    )
    return values


# Nearly every write moves no pool's state: its arrays, built once.
_NOTHING_MOVED: dict[str, object] = {"moved_package_ids": [], **{f"moved_{name}": [] for name in _STATE_COLUMNS}}


def moved_state_arguments(written: Sequence[tuple[LockedPool, PoolState]], at: datetime) -> dict[str, object]:
    """`_moved_state`'s arrays: the row state of each pool in `written` whose state moved (none: empty arrays)."""
    moved = [(pool, after) for pool, after in written if row_state_moved(pool.state, after)]
    if not moved:
        return {**_NOTHING_MOVED, "moved_at": at}
    rows = [package_state_values(after) for _, after in moved]
    arguments: dict[str, object] = {f"moved_{name}": [row[name] for row in rows] for name in _STATE_COLUMNS}
    arguments["moved_alerts_fired"] = [
        None if row["alerts_fired"] is None else pg.json_text(row["alerts_fired"]) for row in rows
    ]
    return {**arguments, "moved_package_ids": [pool.package_id for pool, _ in moved], "moved_at": at}


def _bumped(guard: ColumnElement[bool] | None = None) -> CTE:
    """The version bump of the packages named by `pool_company_ids` and `package_ids`, with the moved state of
    those `moved_package_ids` lists and what the read-back needs; only of those that also match `guard`."""
    named = (organization_packages.c.company_id == any_(bindparam("pool_company_ids", type_=ARRAY(BigInteger)))) & (
        organization_packages.c.id == any_(bindparam("package_ids", type_=ARRAY(BigInteger)))
    )
    return (
        update(organization_packages)
        .where(named if guard is None else named & guard)
        .values(version=organization_packages.c.version + 1, **_moved_state())
        .returning(
            organization_packages.c.id,
            organization_packages.c.company_id,
            organization_packages.c.version,
            organization_packages.c.cycle_start,
        )
        .cte("bumped")
    )


_BUMPED = _bumped()
# The bump of a write without the pool's lock (`changes.write_if_unmoved`): one package, raised only if it
# is still at the version its rows were read at (`read_version`), open, and charged by no capped WABA.
# Every writer of the package's rows raises its version under the package's lock (`write_changes`), and
# the flag and the closing are checked here, so a package that matches is exactly the one read. An UPDATE,
# not a read: it waits for a writer that holds the package's lock and then checks the version it committed.
BUMPED_IF_UNMOVED = _bumped(
    (organization_packages.c.version == bindparam("read_version", type_=BigInteger))
    & organization_packages.c.closed_at.is_(None)
    & organization_packages.c.spend_caps.is_(False)
)


def found_unmoved() -> ColumnElement[bool]:
    """True once `BUMPED_IF_UNMOVED` has raised the version: the guard of every other CTE of that write (an
    uncorrelated EXISTS, evaluated once before the CTE touches a row, so the bump and its wait come first)."""
    return select(literal_column("1")).select_from(BUMPED_IF_UNMOVED).exists()


def bump_with_spend_pg(
    spend_upsert: postgresql.Insert, usage_upsert: postgresql.Insert, *, bumped: CTE = _BUMPED
) -> Select[tuple[object, ...]]:
    """One PostgreSQL statement: the spend and usage upserts (CTEs), then the version bump and the read-back.

    The copy write ends with it, so raising the version costs no round trip of its own (as a statement of
    its own it cost the single path about 10% at 64 senders on one pool). `bumped` is `BUMPED_IF_UNMOVED`
    for a write without the pool's lock (the upserts then guarded by `found_unmoved()`).
    """
    spent_now = spend_upsert.returning(
        waba_cycle_spend.c.company_id,
        waba_cycle_spend.c.waba_id,
        waba_cycle_spend.c.cycle_start,
        waba_cycle_spend.c.spent_minor,
        waba_cycle_spend.c.capped_spent_minor,
    ).cte("spent_now")
    return _figures(bumped, spent_now).add_cte(usage_upsert.cte("usage_added"))


_BUMP_PG = pg.compile_statement(_figures(_BUMPED))


def _waba_figures(row: ColumnValues) -> WabaFigures:
    cap = None
    if row["cap_amount_minor"] is not None:
        cap = stored_cap(row["cap_amount_minor"], row["cap_categories"], row["cap_warn_percent"])
    return WabaFigures(
        row["waba_id"],
        row["name"],
        row["spent_minor"] or 0,
        row["waba_package_id"],
        cap,
        (row["capped_spent_minor"] or 0) if cap is not None else 0,
    )


async def bump_versions(
    connection: AsyncConnection,
    written: Sequence[tuple[LockedPool, PoolState]],
    *,
    at: datetime,
    statement: pg.Compiled | None = None,
    **arguments: object,
) -> list[Written]:
    """Raise each pool's version by one (its cycle already saved) and read back its WABAs; in `written`'s order.

    On PostgreSQL `statement` may be a compiled `bump_with_spend_pg` (with its `arguments`), which writes
    the spend and usage in the same round trip.
    """
    if not written:
        return []
    package_ids = [pool.package_id for pool, _ in written]
    # The companies of the pools (one, unless a group spans companies): every statement names them.
    company_ids = sorted({after.company_id for _, after in written})
    rows: Sequence[ColumnValues]
    if pg.is_postgresql(connection):
        rows = await pg.fetch(
            connection,
            statement or _BUMP_PG,
            pool_company_ids=company_ids,
            package_ids=package_ids,
            **moved_state_arguments(written, at),
            **arguments,
        )
    else:
        mine = organization_packages.c.company_id.in_(company_ids) & organization_packages.c.id.in_(package_ids)
        await connection.execute(
            update(organization_packages).where(mine).values(version=organization_packages.c.version + 1)
        )
        query = _figures(organization_packages).where(mine)
        rows = (await connection.execute(query)).mappings().all()
    became = _written(rows, written, at)
    if became is None:
        raise RuntimeError(f"pools {package_ids} were written but a package row is gone")
    return became


async def bump_if_unmoved(
    connection: AsyncConnection,
    pool: LockedPool,
    after: PoolState,
    *,
    at: datetime,
    statement: pg.Compiled,
    **arguments: object,
) -> Written | None:
    """PostgreSQL, outside a transaction: `statement` (a write ending in `BUMPED_IF_UNMOVED`, with its
    `arguments`) run for one package read at `pool.version`; what it became, or None if it had moved (then
    the statement wrote nothing)."""
    rows = await pg.fetch(
        connection,
        statement,
        pool_company_ids=[after.company_id],
        package_ids=[pool.package_id],
        read_version=pool.version,
        **moved_state_arguments([(pool, after)], at),
        **arguments,
    )
    became = _written(rows, [(pool, after)], at)
    return None if became is None else became[0]


def _written(
    rows: Sequence[ColumnValues], written: Sequence[tuple[LockedPool, PoolState]], at: datetime
) -> list[Written] | None:
    """What each pool became, from the read-back's rows (one per WABA, or one without); None if one is missing."""
    versions: dict[int, int] = {}
    wabas: dict[int, list[WabaFigures]] = {pool.package_id: [] for pool, _ in written}
    for row in rows:
        versions[row["package_id"]] = row["version"]
        if row["waba_id"] is not None:
            wabas[row["package_id"]].append(_waba_figures(row))
    if any(pool.package_id not in versions for pool, _ in written):
        return None
    return [
        Written(pool, after, versions[pool.package_id], tuple(wabas[pool.package_id]), at) for pool, after in written
    ]
