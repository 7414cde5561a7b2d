"""Companies, WABAs and the price list: provisioning upserts and lookups."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from sqlalchemy import BigInteger, String, and_, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain.pricing import PriceEntry
from wabapool.storage import pg
from wabapool.storage.caps import mark_capped_packages
from wabapool.storage.tables import companies, price_list, price_list_versions, waba_owners, whatsapp_packages
from wabapool.storage.types import ColumnValues, Record
from wabapool.storage.upsert import insert_for


async def get_company(connection: AsyncConnection, company_id: int) -> Record | None:
    return (await connection.execute(select(companies).where(companies.c.company_id == company_id))).first()


async def upsert_company(
    connection: AsyncConnection, *, company_id: int, values: dict[str, object], at: datetime
) -> None:
    statement = insert_for(connection, companies).values(company_id=company_id, created_at=at, updated_at=at, **values)
    await connection.execute(
        statement.on_conflict_do_update(index_elements=["company_id"], set_={**values, "updated_at": at})
    )


async def update_company(connection: AsyncConnection, company_id: int, **values: object) -> None:
    await connection.execute(update(companies).where(companies.c.company_id == company_id).values(**values))


async def upsert_waba(
    connection: AsyncConnection, *, company_id: int, waba_id: str, name: str, package_id: int | None, at: datetime
) -> None:
    statement = insert_for(connection, whatsapp_packages).values(
        company_id=company_id, waba_id=waba_id, name=name, organization_package_id=package_id, created_at=at
    )
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=["company_id", "waba_id"],
            set_={"name": name, "organization_package_id": package_id},
        )
    )
    await mark_capped_packages(connection, company_id, [waba_id])


async def claim_waba(connection: AsyncConnection, company_id: int, waba_id: str, *, at: datetime) -> tuple[int, bool]:
    """Claim a WABA id for the company in the caller's transaction: (its owner, whether this call claimed it).

    Meta's WABA id is global, so its owner is kept in `waba_owners`, keyed by the id alone (on Citus a
    table distributed by `waba_id`). A concurrent claim of the same id waits on the key and then finds
    it taken; a rolled-back provisioning takes its claim back with it.
    """
    claimed = await connection.execute(
        insert_for(connection, waba_owners)
        .values(waba_id=waba_id, company_id=company_id, claimed_at=at)
        .on_conflict_do_nothing(index_elements=["waba_id"])
    )
    if claimed.rowcount:
        return company_id, True
    owner = (
        await connection.execute(select(waba_owners.c.company_id).where(waba_owners.c.waba_id == waba_id))
    ).scalar_one()
    return int(owner), False


_WABA_PACKAGES = select(
    whatsapp_packages.c.company_id, whatsapp_packages.c.waba_id, whatsapp_packages.c.organization_package_id
)
# Arrays on PostgreSQL, so every group size is the one statement (an IN list is a statement per length).
_WABA_PACKAGES_ANY = _WABA_PACKAGES.where(
    whatsapp_packages.c.company_id == any_(bindparam("company_ids", type_=ARRAY(BigInteger)))
).where(whatsapp_packages.c.waba_id == any_(bindparam("waba_ids", type_=ARRAY(String))))


async def waba_packages(
    connection: AsyncConnection, wanted: Mapping[int, Collection[str]]
) -> dict[int, dict[str, int | None]]:
    """The package each wanted WABA charges, by company (None: the WABA has none); unknown ones left out.

    One statement for every company asked about: a deduction group meeting many companies for the first
    time looked them up one round trip each (`python -m bench.hot_pool --pools 10000`).
    """
    found: dict[int, dict[str, int | None]] = {company_id: {} for company_id in wanted}
    waba_ids = sorted({waba_id for wabas in wanted.values() for waba_id in wabas})
    if not waba_ids:
        return found
    # Through SQLAlchemy, not the raw driver (`storage.pg`): it runs once per company a process meets, off the
    # warm path, so the driver's saving would not show; a dropped connection is recovered from either way.
    if pg.is_postgresql(connection):
        arrays = {"company_ids": sorted(wanted), "waba_ids": waba_ids}
        rows = (await connection.execute(_WABA_PACKAGES_ANY, arrays)).mappings().all()
    else:
        query = _WABA_PACKAGES.where(whatsapp_packages.c.company_id.in_(sorted(wanted)))
        rows = (await connection.execute(query.where(whatsapp_packages.c.waba_id.in_(waba_ids)))).mappings().all()
    for row in rows:
        if row["waba_id"] in wanted[row["company_id"]]:  # the two lists cross: keep the pairs asked for
            found[row["company_id"]][row["waba_id"]] = row["organization_package_id"]
    return found


async def known_companies(connection: AsyncConnection, company_ids: Collection[int]) -> set[int]:
    """Which of these companies exist, in one statement."""
    if not company_ids:
        return set()
    query = select(companies.c.company_id).where(companies.c.company_id.in_(sorted(company_ids)))
    rows = await connection.execute(query)
    return {row.company_id for row in rows}


async def list_wabas(connection: AsyncConnection, company_id: int) -> list[Record]:
    """The company's WABAs in the order they joined, with the package each charges."""
    rows = await connection.execute(
        select(whatsapp_packages.c.waba_id, whatsapp_packages.c.name, whatsapp_packages.c.organization_package_id)
        .where(whatsapp_packages.c.company_id == company_id)
        .order_by(whatsapp_packages.c.created_at, whatsapp_packages.c.id)
    )
    return list(rows)


async def waba_package_id(connection: AsyncConnection, company_id: int, waba_id: str) -> int | None:
    """The package a WABA of the company charges, if it has one."""
    return (
        await connection.execute(
            select(whatsapp_packages.c.organization_package_id).where(
                and_(whatsapp_packages.c.company_id == company_id, whatsapp_packages.c.waba_id == waba_id)
            )
        )
    ).scalar_one_or_none()


async def point_wabas(connection: AsyncConnection, company_id: int, package_of: Mapping[str, int]) -> None:
    """Point each WABA at a package (the backfill and its rollback)."""
    statement = (
        update(whatsapp_packages)
        .where(
            and_(
                whatsapp_packages.c.company_id == company_id,
                whatsapp_packages.c.waba_id == bindparam("w_waba_id"),
            )
        )
        .values(organization_package_id=bindparam("w_package_id"))
    )
    if package_of:
        await connection.execute(
            statement,
            [{"w_waba_id": waba_id, "w_package_id": package_id} for waba_id, package_id in package_of.items()],
        )
        await mark_capped_packages(connection, company_id, list(package_of))


def _scope_key(company_id: int | None, market: str | None) -> str:
    return f"{company_id if company_id is not None else '*'}:{market or '*'}"


async def upsert_price(
    connection: AsyncConnection,
    *,
    deduction_code: str,
    unit_price_minor: int,
    company_id: int | None,
    market: str | None,
    effective_from: datetime,
    at: datetime,
) -> None:
    statement = insert_for(connection, price_list).values(
        deduction_code=deduction_code,
        company_id=company_id,
        market=market,
        scope_key=_scope_key(company_id, market),
        unit_price_minor=unit_price_minor,
        effective_from=effective_from,
        created_at=at,
    )
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=["deduction_code", "scope_key", "effective_from"],
            set_={"unit_price_minor": unit_price_minor},
        )
    )
    # Every process's price book reads the prices again once it sees this version (service.price_books).
    # (An upsert: a database emptied by hand has no version row, and a book never keeps prices without one.)
    bump = insert_for(connection, price_list_versions).values(id=1, version=1)
    await connection.execute(
        bump.on_conflict_do_update(index_elements=["id"], set_={"version": price_list_versions.c.version + 1})
    )


async def price_list_version(connection: AsyncConnection) -> int | None:
    """The price list's version (None on a database whose migration did not add it: then nothing is kept)."""
    return (
        await connection.execute(select(price_list_versions.c.version).where(price_list_versions.c.id == 1))
    ).scalar_one_or_none()


_PRICES_OF_CODES_PG = pg.compile_statement(
    select(price_list).where(price_list.c.deduction_code == any_(bindparam("codes", type_=ARRAY(String))))
)


async def prices_for_codes(connection: AsyncConnection, codes: Collection[str]) -> list[PriceEntry]:
    """Every entry of these deduction codes: the defaults and every company's own (the price list is a
    reference table, shared by all companies; a process keeps it, `service.price_books`)."""
    rows: Sequence[ColumnValues]
    if pg.is_postgresql(connection):
        rows = await pg.fetch(connection, _PRICES_OF_CODES_PG, codes=list(codes))
    else:
        rows = (
            (await connection.execute(select(price_list).where(price_list.c.deduction_code.in_(list(codes)))))
            .mappings()
            .all()
        )
    return [_price_entry(row) for row in rows]


def _price_entry(row: ColumnValues) -> PriceEntry:
    return PriceEntry(
        deduction_code=row["deduction_code"],
        unit_price_minor=row["unit_price_minor"],
        effective_from=row["effective_from"],
        company_id=row["company_id"],
        market=row["market"],
    )


async def prices_for(connection: AsyncConnection, company_id: int, codes: Collection[str]) -> list[PriceEntry]:
    """Every entry (default and the company's) for these deduction codes."""
    return [entry for entry in await prices_for_codes(connection, codes) if entry.company_id in (None, company_id)]


async def waba_exists(connection: AsyncConnection, company_id: int, waba_id: str) -> bool:
    row = await connection.execute(
        select(whatsapp_packages.c.id).where(
            and_(whatsapp_packages.c.company_id == company_id, whatsapp_packages.c.waba_id == waba_id)
        )
    )
    return row.first() is not None
