"""A lone deduction costs what the simplest design costs, and what it keeps per process never goes stale.

The row-lock design sends five statements (BEGIN, lock the pool, update it,
insert the deduction, COMMIT). wabapool's lone deduction sends two, outside a
transaction: one reads the package, reserves the row ids and reads the price
list's version (`storage.group_lock.read_group`), one writes everything,
guarded by the version read (`storage.changes.write_if_unmoved`). What
made that possible is kept per process (the prices, the WABAs' packages) or
flagged on the locked row (whether caps apply): each is shown here to follow
a change made by another process (another service on the same database).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests import router
from tests.conftest import COMPANY_ID, WABA_IDS, FakeClock, provision_demo_pool, service_for
from wabapool.domain.caps import SpendCap
from wabapool.domain.errors import BillingError, Rejection
from wabapool.service import BillingService, DeductionRequest
from wabapool.storage.database import Database


def _request(code: str, quantity: int = 1, waba_id: str = WABA_IDS[0]) -> DeductionRequest:
    return DeductionRequest(COMPANY_ID, "wa", "wa_marketing_id", code, quantity, waba_id, category="marketing")


def _two_processes(database: Database, clock: FakeClock) -> tuple[BillingService, BillingService]:
    """Two services on one database, each with its own price book and remembered packages (two processes)."""
    return service_for(database, clock=clock), service_for(database, clock=clock)


@pytest.mark.postgres
async def test_a_lone_deduction_on_an_idle_pool_sends_two_statements_where_the_row_lock_design_sends_five(
    postgres_url: str, statement_recorder: router.Recorder
) -> None:
    from tests.conftest import truncate_all

    database = Database(postgres_url)
    try:
        await truncate_all(database)
        service = service_for(database)
        await provision_demo_pool(service)
        await service.deduct(_request("warm-up"))  # the WABA's package and the prices, now kept
        statement_recorder.clear()
        result = await service.deduct(_request("lone"))
        sent = [statement.sql for statement in statement_recorder.statements if statement.origin]
    finally:
        await database.dispose()
    assert result.amount == 10
    assert len(sent) == 2, "\n\n".join(sent)
    read, write = sent
    assert "FOR UPDATE" not in read and "nextval" in read and "price_list_versions" in read
    assert "organization_packages.version = $" in write, "the write is guarded by the version read"
    assert "INSERT INTO deduction_requests" in write and "INSERT INTO ledger_entries" in write


async def test_a_price_changed_by_another_process_is_charged_by_one_that_kept_the_old_price(
    database: Database, clock: FakeClock
) -> None:
    one, other = _two_processes(database, clock)
    await provision_demo_pool(one, unit_price=10)
    assert (await other.deduct(_request("before", quantity=2))).amount == 20
    clock.advance(minutes=1)
    await one.set_price("wa_marketing_id", unit_price_minor=15, effective_from=clock.now - timedelta(seconds=1))
    assert (await other.deduct(_request("after", quantity=2))).amount == 30
    company_price = 7
    await one.set_price(
        "wa_marketing_id", unit_price_minor=company_price, company_id=COMPANY_ID, effective_from=clock.now
    )
    assert (await other.deduct(_request("own-price", quantity=2))).amount == 2 * company_price


async def test_a_cap_set_by_another_process_refuses_in_one_that_charged_the_waba_without_caps(
    database: Database, clock: FakeClock
) -> None:
    one, other = _two_processes(database, clock)
    await provision_demo_pool(one, unit_price=10)
    await other.deduct(_request("uncapped", quantity=3))  # 30 spent, no cap anywhere: caps not read
    await one.set_spend_cap(COMPANY_ID, WABA_IDS[0], SpendCap(40, None, 50), changed_by="test")
    assert (await other.deduct(_request("within", quantity=1))).amount == 10
    with pytest.raises(BillingError) as refused:
        await other.deduct(_request("past-the-cap", quantity=1))
    assert refused.value.code is Rejection.WABA_CAP_EXCEEDED
    assert (await other.deduct(_request("another-waba", quantity=1, waba_id=WABA_IDS[1]))).amount == 10
