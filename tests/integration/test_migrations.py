"""Migrations: up, down and up again; the RFC's index change refuses to roll back a shared pool."""

from __future__ import annotations

import pytest

from tests.conftest import COMPANY_ID, WABA_IDS, provision_demo_pool, service_for
from wabapool.storage.database import Database
from wabapool.storage.migrate import downgrade, upgrade


def test_schema_goes_down_and_up_again_when_empty(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    downgrade(url, "base")
    upgrade(url)


async def test_the_index_change_refuses_to_roll_back_while_a_package_has_several_wabas(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    upgrade(url)
    database = Database(url)
    await provision_demo_pool(service_for(database))
    await database.dispose()
    assert len(WABA_IDS) > 1
    with pytest.raises(RuntimeError, match="shared by more than one WABA") as refused:
        downgrade(url, "0001")
    assert f"company {COMPANY_ID} (package " in str(refused.value)  # names whom to move back first
    upgrade(url)  # still at head, nothing half-done


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
    with pytest.raises(RuntimeError, match=r"company 61 \(2 packages\)"):
        downgrade(url, "0005")
    upgrade(url)


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
    downgrade(url, "0001")
    upgrade(url)
