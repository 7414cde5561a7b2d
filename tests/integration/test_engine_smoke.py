from __future__ import annotations

from tests.conftest import WABA_IDS, provision_demo_pool, waba_ids_of
from wabapool.service import BillingService, DeductionRequest


def deduction(code: str, quantity: int = 1, waba: str = WABA_IDS[0]) -> DeductionRequest:
    return DeductionRequest(
        company_id=1001,
        billing_code="wa",
        deduction_code="wa_marketing_id",
        unique_code=code,
        quantity=quantity,
        waba_id=waba,
    )


async def test_deduction_splits_allowance_then_postpaid(service: BillingService) -> None:
    await provision_demo_pool(service, allowance=100, postpaid_limit=50)
    result = await service.deduct(deduction("m1", quantity=12))
    assert result.value_before == 100
    assert result.value_after == -20
    assert [(a.quota_type, a.amount) for a in result.allocations] == [("initial", 100), ("postpaid", 20)]
    view = await service.balance(1001)
    assert view.total == -20 and view.available == 30
    assert {w.waba_id: w.spent_this_cycle for w in view.wabas}[WABA_IDS[0]] == 120


async def test_reconcile_passes_after_deductions_and_refund(service: BillingService) -> None:
    from wabapool.service.models import RefundRequest
    from wabapool.service.reconcile import reconcile

    await provision_demo_pool(service, allowance=100, postpaid_limit=50)
    await service.deduct(deduction("m1", quantity=12))
    await service.top_up(1001, amount=30, payment_reference="pay-1")
    await service.refund(RefundRequest(company_id=1001, unique_code="m1", refund_code="r1"))
    report = await reconcile(service.database)
    assert report.ok, report.violations
    assert report.checks["deductions"] == 1


def deduction_of(company_id: int, code: str) -> DeductionRequest:
    return DeductionRequest(company_id, "wa", "wa_marketing_id", code, 1, waba_ids_of(company_id)[0])


async def test_a_batch_over_several_pools_answers_in_order_and_charges_each_pool_its_own(
    service: BillingService,
) -> None:
    from wabapool.service.reconcile import reconcile

    companies = [2001, 2002, 2003]
    for company_id in companies:
        await provision_demo_pool(service, company_id=company_id, allowance=100, postpaid_limit=0)
    batch = [deduction_of(companies[i % 3], f"m{i}") for i in range(30)]
    batch.append(deduction_of(companies[0], "m0"))  # a repeat, inside the same batch
    batch.append(deduction_of(9999, "nobody"))  # an unknown company among them
    outcomes = await service.deduct_batch(batch)
    assert [o.unique_code for o in outcomes] == [r.unique_code for r in batch]
    assert [o.status for o in outcomes] == ["applied"] * 30 + ["replayed", "rejected"]
    for company_id in companies:
        assert (await service.balance(company_id)).total == 100 - 10 * 10
    assert (await reconcile(service.database)).ok
