"""Migrations: up, down and up again; the RFC's index change refuses to roll back a shared pool."""

from __future__ import annotations

import pytest

from tests.conftest import WABA_IDS, provision_demo_pool
from wabapool.service import BillingService
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
    await provision_demo_pool(BillingService(database))
    await database.dispose()
    assert len(WABA_IDS) > 1
    with pytest.raises(RuntimeError, match="shared by more than one WABA"):
        downgrade(url, "0001")
    upgrade(url)  # still at head, nothing half-done


async def test_the_index_change_rolls_back_when_each_package_has_one_waba(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'single.db'}"
    upgrade(url)
    database = Database(url)
    service = BillingService(database)
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
