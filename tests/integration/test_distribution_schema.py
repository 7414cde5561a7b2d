"""The migrated schema on PostgreSQL keeps Citus's rules: every table placed, every key of a distributed table
with its distribution column (`storage/distribution.py` is the list; docs/scale-out.md the cluster's calls)."""

from __future__ import annotations

import asyncpg

from tests.distribution_rules import read_catalog, scratch_database, violations
from tests.services import require_postgres
from wabapool.storage import distribution
from wabapool.storage.migrate import upgrade


async def test_every_table_is_placed_and_every_key_of_a_distributed_table_has_its_column() -> None:
    require_postgres()
    async with scratch_database("schema") as url:
        upgrade(url)
        connection = await asyncpg.connect(url)
        try:
            tables, keys = await read_catalog(connection)
        finally:
            await connection.close()
    assert violations(tables, keys) == []
    # The lists name only tables that exist: a renamed or dropped table is taken out of them too.
    listed = {
        *distribution.COMPANY_TABLES,
        *distribution.OTHER_DISTRIBUTED_TABLES,
        *distribution.REFERENCE_TABLES,
        *distribution.LOCAL_TABLES,
    }
    assert listed - set(tables) == set()


async def test_the_check_names_a_key_without_company_id_and_a_table_in_no_list() -> None:
    require_postgres()
    async with scratch_database("schema_broken") as url:
        upgrade(url)
        connection = await asyncpg.connect(url)
        try:
            await connection.execute("ALTER TABLE refunds ADD CONSTRAINT uq_refunds_code_alone UNIQUE (refund_code)")
            await connection.execute("CREATE UNIQUE INDEX ix_ledger_reference ON ledger_entries (reference)")
            await connection.execute(
                "ALTER TABLE ledger_entries ADD CONSTRAINT fk_ledger_package"
                " FOREIGN KEY (organization_package_id, company_id) REFERENCES organization_packages (company_id, id)"
                " NOT VALID"
            )
            await connection.execute(
                "ALTER TABLE whatsapp_packages ADD CONSTRAINT fk_waba_owner FOREIGN KEY (waba_id)"
                " REFERENCES waba_owners (waba_id) NOT VALID"
            )
            await connection.execute("CREATE TABLE unplaced (id bigint PRIMARY KEY)")
            await connection.execute("CREATE TABLE loose (company_id bigint, id bigint)")
            tables, keys = await read_catalog(connection)
        finally:
            await connection.close()
    found = violations([*tables, "not_a_real_table"], keys)
    assert any("unique key uq_refunds_code_alone of refunds (refund_code) lacks" in v for v in found)
    assert any("unique index ix_ledger_reference of ledger_entries (reference) lacks" in v for v in found)
    assert any("fk_ledger_package" in v and "does not match company_id" in v for v in found)
    assert any("fk_waba_owner" in v and "not co-located" in v for v in found)
    assert any(v.startswith("table unplaced is neither") for v in found)
    assert any(v.startswith("table loose is neither") for v in found)
    assert any(v.startswith("table not_a_real_table is neither") for v in found)
