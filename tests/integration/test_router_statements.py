"""The router check itself: it catches a product statement that names no company, or several, and lets a
pinned one and an allowed cross-company one through (tests/router.py; every PostgreSQL test runs under it)."""

from __future__ import annotations

from sqlalchemy import select, text

from tests import router
from tests.conftest import truncate_all
from wabapool.storage.database import Database
from wabapool.storage.tables import ledger_entries, organization_packages


async def test_an_unpinned_statement_on_a_company_table_is_caught_and_a_pinned_one_passes(
    postgres_url: str, statement_recorder: router.Recorder
) -> None:
    database = Database(postgres_url)
    await truncate_all(database)
    try:
        async with database.read() as connection:
            statement_recorder.clear()
            with router.sent_as("wabapool.storage.example:unpinned"):
                await connection.execute(select(ledger_entries.c.id).where(ledger_entries.c.kind == "deduction"))
            with router.sent_as("wabapool.storage.example:two_companies"):
                await connection.execute(
                    select(organization_packages.c.id).where(organization_packages.c.company_id.in_([1, 2]))
                )
            with router.sent_as("wabapool.storage.example:unpinned_join"):
                await connection.execute(
                    text(
                        "SELECT l.id FROM ledger_entries l JOIN organization_packages p"
                        " ON p.id = l.organization_package_id WHERE l.company_id = 7"
                    )
                )
            caught = statement_recorder.violations()
            statement_recorder.clear()
            with router.sent_as("wabapool.storage.example:pinned"):
                await connection.execute(select(ledger_entries.c.id).where(ledger_entries.c.company_id == 7))
                await connection.execute(
                    text(
                        "SELECT l.id FROM ledger_entries l JOIN organization_packages p"
                        " ON p.company_id = l.company_id AND p.id = l.organization_package_id WHERE l.company_id = 7"
                    )
                )
            with router.sent_as("wabapool.storage.package_scans:due_package_ids"):  # allowed by name
                await connection.execute(select(organization_packages.c.id))
            passed = statement_recorder.violations()
            statement_recorder.clear()
    finally:
        await database.dispose()
    assert any(v.startswith("wabapool.storage.example:unpinned: no company_id condition") for v in caught)
    assert any(v.startswith("wabapool.storage.example:two_companies: binds 2 company ids") for v in caught)
    assert any(v.startswith("wabapool.storage.example:unpinned_join: JOIN organization_packages") for v in caught)
    assert passed == []


def test_inserts_and_copies_are_judged_by_the_company_they_carry() -> None:
    one = router.Statement(
        "INSERT INTO outbox_events (event_id, company_id, event_type) VALUES ($1::VARCHAR, $2::BIGINT, $3)",
        ("e", 5, "t"),
        "wabapool.storage.ledger:emit_events",
    )
    many = router.Statement(
        "INSERT INTO waba_cycle_spend (company_id, waba_id) SELECT unnest($1::BIGINT[]), unnest($2::VARCHAR[]) "
        "ON CONFLICT (company_id, waba_id) DO UPDATE SET spent_minor = 1",
        ([5, 6], ["a", "b"]),
        "wabapool.storage.changes:write_changes",
    )
    missing = router.Statement(
        "INSERT INTO payments (kind, amount_minor) VALUES ($1, $2)", ("top_up", 5), "wabapool.storage.requests:x"
    )
    copied = router.Statement(
        "ledger_entries", [(5, 1), (6, 2)], "wabapool.storage.changes:_copy_rows", ("company_id", "id")
    )
    assert router.judge(one) == []
    assert "binds 2 company ids" in router.judge(many)[0]
    assert "without company_id" in router.judge(missing)[0]
    assert "of 2 companies" in router.judge(copied)[0]
    # A test's own statement (no product frame) is not judged.
    assert router.judge(router.Statement("SELECT * FROM ledger_entries", (), "")) == []


def test_every_allowed_cross_company_statement_says_why_and_how_it_runs_on_citus() -> None:
    for origin, allowance in router.ALLOWED.items():
        assert origin.startswith("wabapool."), origin
        assert allowance.reason and allowance.citus, origin
