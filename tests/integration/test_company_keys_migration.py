"""Migration 0008 (company_id in every key) keeps every row: up with data, down, up again, money unchanged.

Run on SQLite (the embedded default) and on a PostgreSQL database of its own. The snapshot is read with
plain SQL on the columns both revisions have, so it is the same question before and after each step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import FakeClock, provision_demo_pool, service_for, waba_ids_of
from tests.distribution_rules import scratch_database
from tests.services import require_postgres
from wabapool.service import CompanyTerms, PackageTerms
from wabapool.service.models import DeductionRequest, RefundRequest
from wabapool.service.reconcile import reconcile
from wabapool.storage.database import Database
from wabapool.storage.migrate import downgrade, upgrade

BEFORE = "0007"
V3_COMPANIES = (71, 72)
V2_COMPANY = 73

# Every row of money and of its record, by the columns revision 0007 already had.
SNAPSHOT = {
    "buckets": "SELECT b.organization_package_id, q.quota_type, q.balance_minor, q.limit_minor, q.used_minor "
    "FROM quota_buckets q JOIN billing_components b ON b.id = q.billing_component_id ORDER BY 1, 2",
    "packages": "SELECT id, company_id, waba_id, funded_base_minor, cycle_start, version, closed_at "
    "FROM organization_packages ORDER BY id",
    "ledger": "SELECT id, company_id, organization_package_id, kind, quota_type, amount_minor, bucket_before_minor, "
    "bucket_after_minor, total_after_minor, deduction_request_id, reference FROM ledger_entries ORDER BY id",
    "deductions": "SELECT id, company_id, unique_code, amount_minor, organization_package_id FROM deduction_requests "
    "ORDER BY id",
    "refunds": "SELECT id, company_id, deduction_request_id, amount_minor FROM refunds ORDER BY id",
    "payments": "SELECT id, company_id, payment_reference, amount_minor FROM payments ORDER BY id",
    "wabas": "SELECT id, company_id, waba_id, organization_package_id FROM whatsapp_packages ORDER BY id",
    "events": "SELECT id, event_id, company_id, event_type, dedup_key FROM outbox_events ORDER BY id",
    "spend": "SELECT company_id, waba_id, spent_minor FROM waba_cycle_spend ORDER BY 1, 2",
}


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'keys.db'}"
        return
    require_postgres()
    async with scratch_database("company_keys") as scratch:
        yield scratch


async def _fill(url: str) -> None:
    """Three companies' worth of every kind of row: v3 pools, a v2 company's own packages, deductions,
    refunds, top-ups, events."""
    database = Database(url)
    service = service_for(database, clock=FakeClock(datetime(2026, 11, 10, 3, 0, tzinfo=UTC)))
    try:
        for company_id in V3_COMPANIES:
            await provision_demo_pool(service, company_id=company_id, allowance=300, postpaid_limit=200)
            await service.top_up(company_id, amount=150, payment_reference=f"top-{company_id}")
        await service.provision_company(V2_COMPANY, CompanyTerms(billing_version="v2"))
        for waba_id in ("7301", "7302"):
            await service.provision_waba(V2_COMPANY, waba_id, name=waba_id, package=PackageTerms(allowance=200))
        sends = [
            DeductionRequest(company_id, "wa", "wa_marketing_id", f"d{company_id}-{n}", 1 + n % 4, waba_id)
            for company_id in V3_COMPANIES
            for n, waba_id in enumerate(waba_ids_of(company_id) * 6)
        ]
        sends += [DeductionRequest(V2_COMPANY, "wa", "wa_marketing_id", f"v2-{n}", 3, "7301") for n in range(4)]
        for send in sends:
            await service.deduct(send)
        for company_id in (*V3_COMPANIES, V2_COMPANY):
            code = f"v2-{1}" if company_id == V2_COMPANY else f"d{company_id}-2"
            await service.refund(RefundRequest(company_id, code, f"r-{company_id}"))
    finally:
        await database.dispose()


async def _snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    database = Database(url)
    try:
        async with database.read() as connection:
            return {
                name: [tuple(row) for row in await connection.execute(text(query))] for name, query in SNAPSHOT.items()
            }
    finally:
        await database.dispose()


async def _reconciled(url: str) -> None:
    database = Database(url)
    try:
        report = await reconcile(database)
        assert report.ok, report.violations
    finally:
        await database.dispose()


async def test_the_company_keys_migration_goes_down_and_up_with_every_balance_and_entry_unchanged(url: str) -> None:
    upgrade(url)
    await _fill(url)
    await _reconciled(url)
    before = await _snapshot(url)
    assert len(before["ledger"]) > 40 and len(before["refunds"]) == 3 and len(before["events"]) > 0

    downgrade(url, BEFORE)
    assert await _snapshot(url) == before

    upgrade(url)
    assert await _snapshot(url) == before
    await _reconciled(url)
    # The keys came back filled in: the children carry their parents' companies, every WABA has its owner.
    database = Database(url)
    try:
        async with database.read() as connection:
            mismatched = await connection.execute(
                text(
                    "SELECT count(*) FROM quota_buckets q JOIN billing_components b ON b.id = q.billing_component_id"
                    " JOIN organization_packages p ON p.id = b.organization_package_id"
                    " WHERE q.company_id <> b.company_id OR b.company_id <> p.company_id"
                )
            )
            assert mismatched.scalar_one() == 0
            owners = await connection.execute(
                text(
                    "SELECT count(*) FROM whatsapp_packages w LEFT JOIN waba_owners o"
                    " ON o.waba_id = w.waba_id AND o.company_id = w.company_id WHERE o.waba_id IS NULL"
                )
            )
            assert owners.scalar_one() == 0
    finally:
        await database.dispose()
