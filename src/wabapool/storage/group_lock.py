"""A deduction group's first statement: lock its packages, reserve its rows' ids, read the price list's version.

On PostgreSQL one round trip does what took four (the price list, the ids, the
lock, the caps): the packages are locked in (company, package id) order as
`pools.load_packages` locks them, with the reserved ids from the deductions'
sequence (a CTE, run once) and the price list's version (`service.price_books`
reads prices only when it moved). Each package carries its `spend_caps` flag,
so caps are read only for packages that have them. SQLite runs the same reads
as separate statements (one writer, no round trips to save).

`read_group` is the same statement without the lock, outside a transaction:
the read of a group written only if its package has not moved meanwhile
(`changes.write_if_unmoved`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from sqlalchemy import BigInteger, Integer, any_, bindparam, func, literal_column, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.storage import pg
from wabapool.storage.changes import reserve_deduction_ids
from wabapool.storage.companies import price_list_version
from wabapool.storage.pools import LOCKED_TABLES, PACKAGE_ROWS, POOL_COLUMNS, LockedPool, load_packages, packages_of
from wabapool.storage.tables import organization_packages, price_list_versions


class GroupLock(NamedTuple):
    """What the group's lock statement found: the packages (locked), the reserved ids, the price list's version."""

    packages: dict[int, LockedPool]
    ids: list[int]
    price_version: int | None


_RESERVED = (
    select(func.array_agg(literal_column("nextval('deduction_requests_id_seq')")).label("ids"))
    .select_from(func.generate_series(1, bindparam("reserve", type_=Integer)))
    .cte("reserved")
)
_PRICE_VERSION = select(price_list_versions.c.version).where(price_list_versions.c.id == 1).scalar_subquery()

_GROUP_ROWS = (
    select(*POOL_COLUMNS, _RESERVED.c.ids, _PRICE_VERSION.label("price_version"))
    .select_from(PACKAGE_ROWS.join(_RESERVED, true()))
    .where(
        (organization_packages.c.company_id == any_(bindparam("company_ids", type_=ARRAY(BigInteger))))
        & (organization_packages.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
    )
    # The order every transaction locking several packages takes them in (see pools.packages_query).
    .order_by(organization_packages.c.company_id, organization_packages.c.id)
)
_LOCK_GROUP_PG = pg.compile_statement(_GROUP_ROWS.with_for_update(of=LOCKED_TABLES))
_READ_GROUP_PG = pg.compile_statement(_GROUP_ROWS)


async def read_group(
    connection: AsyncConnection, company_ids: Collection[int], package_ids: Collection[int], *, reserve: int
) -> GroupLock | None:
    """`lock_group` without the lock, on PostgreSQL outside a transaction (one consistent snapshot of the
    packages, as of the statement): for a write guarded by the versions read (`changes.write_if_unmoved`).
    None when a package is not found: the locked path tells why."""
    read = await _group_pg(connection, _READ_GROUP_PG, company_ids, package_ids, reserve)
    if read is None or len(read.packages) != len(set(package_ids)):
        return None
    return read


async def lock_group(
    connection: AsyncConnection, company_ids: Collection[int], package_ids: Collection[int], *, reserve: int
) -> GroupLock:
    """Lock these packages of these companies, reserve `reserve` deduction ids, read the price list's version.

    A package not found (or of another company) is missing from `packages`; the caller checks. Without a
    package to lock, the ids and the version are still given (a group whose items are all refused).
    """
    if pg.is_postgresql(connection) and package_ids:
        locked = await _group_pg(connection, _LOCK_GROUP_PG, company_ids, package_ids, reserve)
        if locked is not None:
            return locked
    packages = await load_packages(connection, company_ids, package_ids, for_update=True)
    ids = await reserve_deduction_ids(connection, reserve)
    return GroupLock(packages, ids, await price_list_version(connection))


async def _group_pg(
    connection: AsyncConnection,
    statement: pg.Compiled,
    company_ids: Collection[int],
    package_ids: Collection[int],
    reserve: int,
) -> GroupLock | None:
    """The group's one statement (locking or not) on PostgreSQL; None when it found no package."""
    rows = await pg.fetch(
        connection, statement, company_ids=sorted(set(company_ids)), ids=sorted(package_ids), reserve=max(reserve, 0)
    )
    if not rows:
        return None
    packages = {package.package_id: package for package in packages_of(rows)}
    return GroupLock(packages, sorted(rows[0]["ids"] or ()), rows[0]["price_version"])
