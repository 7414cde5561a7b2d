"""Migrations: up, down and up again; the RFC's index change refuses to roll back a shared pool."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from tests.conftest import COMPANY_ID, WABA_IDS, provision_demo_pool, service_for
from wabapool.storage.database import Database
from wabapool.storage.migrate import downgrade, upgrade


def _schema(url: str) -> dict[str, Any]:
    """Every table with its columns (name, type, nullability), indexes and unique constraints."""
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        return {
            table: (
                [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
                sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)),
                sorted((u["name"] or "", tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)),
            )
            for table in sorted(inspector.get_table_names())
        }
    finally:
        engine.dispose()


def _data(path: Any, *, leave_out: frozenset[tuple[str, str]] = frozenset()) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in a stable order, but for the (table, column)s left out."""
    import sqlite3

    with sqlite3.connect(path) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        data = {}
        for table in tables:
            if table == "alembic_version":
                continue
            columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
            kept = ", ".join(f'"{column}"' for column in columns if (table, column) not in leave_out)
            data[table] = sorted(connection.execute(f'SELECT {kept} FROM "{table}"').fetchall(), key=repr)
        return data


async def _balance(url: str, company_id: int) -> tuple[Any, ...]:
    """What the company's pool shows: its figures and its WABAs' spend."""
    database = Database(url)
    try:
        view = await service_for(database).balance(company_id)
    finally:
        await database.dispose()
    wabas = tuple((w.waba_id, w.spent_this_cycle) for w in view.wabas)
    return view.total, view.available, view.postpaid_used, wabas


def test_schema_goes_down_to_nothing_and_up_again_to_the_same_schema(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    at_head = _schema(url)
    assert {"companies", "ledger_entries", "outbox_events"} <= at_head.keys()
    downgrade(url, "base")
    assert set(_schema(url)) <= {"alembic_version"}  # every table of ours is gone
    upgrade(url)
    assert _schema(url) == at_head


async def test_the_index_change_refuses_to_roll_back_while_a_package_has_several_wabas(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    upgrade(url)
    database = Database(url)
    await provision_demo_pool(service_for(database))
    await database.dispose()
    schema, balance = _schema(url), await _balance(url, COMPANY_ID)
    assert len(WABA_IDS) > 1
    with pytest.raises(RuntimeError, match="shared by more than one WABA") as refused:
        downgrade(url, "0001")
    assert f"company {COMPANY_ID} (package " in str(refused.value)  # names whom to move back first
    upgrade(url)  # still at head, nothing half-done
    assert _schema(url) == schema
    assert await _balance(url, COMPANY_ID) == balance


async def test_the_per_waba_packages_refuse_to_roll_back_naming_companies_with_several(tmp_path) -> None:
    from wabapool.service.models import CompanyTerms, PackageTerms

    url = f"sqlite:///{tmp_path / 'v2.db'}"
    upgrade(url)
    database = Database(url)
    service = service_for(database)
    await service.provision_company(61, CompanyTerms(billing_version="v2"))
    for waba_id in ("6101", "6102"):
        await service.provision_waba(61, waba_id, name=waba_id, package=PackageTerms(allowance=5))
    await database.dispose()
    schema, balance = _schema(url), await _balance(url, 61)
    with pytest.raises(RuntimeError, match=r"company 61 \(2 packages\)"):
        downgrade(url, "0005")
    upgrade(url)
    assert _schema(url) == schema
    assert await _balance(url, 61) == balance


async def test_the_index_change_rolls_back_when_each_package_has_one_waba(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'single.db'}"
    upgrade(url)
    database = Database(url)
    service = service_for(database)
    await provision_demo_pool(service, company_id=5)
    await database.dispose()
    # Only one WABA per package: keep the first, detach the others (as a v2 company would look).
    import sqlite3

    with sqlite3.connect(tmp_path / "single.db") as connection:
        connection.execute(
            "UPDATE whatsapp_packages SET organization_package_id = NULL WHERE waba_id != ?", (WABA_IDS[0],)
        )
    # The pool's change counter goes with the rollback and starts again at 0: it only orders the balance
    # cache's values, which forgets versions a TTL and a fence after the last one it saw. So does the price
    # list's version (0011), which only tells the processes' price books to read the prices again.
    counter = frozenset({("organization_packages", "version"), ("price_list_versions", "version")})
    schema, data = _schema(url), _data(tmp_path / "single.db", leave_out=counter)
    downgrade(url, "0001")
    assert _schema(url) != schema
    upgrade(url)
    assert _schema(url) == schema
    assert _data(tmp_path / "single.db", leave_out=counter) == data
