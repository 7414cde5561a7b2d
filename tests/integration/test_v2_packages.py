"""v2 served through the HTTP API: one package per WABA, charged, funded and shown per WABA; the feature flag."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api_support import INTERNAL, INTERNAL_HEADERS, PUBLIC, bearer, deduction_body
from tests.conftest import TEST_PII_KEYS, service_for, truncate_all
from wabapool.service.reconcile import reconcile
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade

V2 = 21
V3 = 22
PRICE = 1_000
# Three WABAs of a v2 company, each with its own package: allowance, postpaid limit.
PACKAGES = {"2101": (5_000, 0), "2102": (2_000, 3_000), "2103": (0, 0)}


async def put(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await http.put(f"{INTERNAL}{path}", json=body, headers=INTERNAL_HEADERS)


async def post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await http.post(f"{INTERNAL}/quota-managements/{path}", json=body, headers=INTERNAL_HEADERS)


async def info(http: httpx.AsyncClient, company_id: int = V2, *, cached: bool = False) -> dict[str, Any]:
    if not cached:
        await http.put(f"{INTERNAL}/quota-managements/{company_id}/invalidate-cache", headers=INTERNAL_HEADERS)
    response = await http.get(f"{PUBLIC}/billings/info", headers=bearer(company_id))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]  # type: ignore[no-any-return]


async def provision_v2(http: httpx.AsyncClient) -> None:
    assert (await put(http, f"/companies/{V2}", {"billing_version": "v2"})).status_code == 200
    for waba_id, (allowance, limit) in PACKAGES.items():
        response = await put(
            http,
            f"/companies/{V2}/wabas/{waba_id}",
            {"name": f"WABA {waba_id}", "package": {"allowance": allowance, "postpaid_limit": limit}},
        )
        assert response.status_code == 200, response.text
        assert response.json()["package"]["allowance"] == allowance
    response = await put(
        http, "/price-list/wa_marketing_id", {"unit_price": PRICE, "effective_from": "2025-07-01T00:00:00Z"}
    )
    assert response.status_code == 200, response.text


async def test_a_v2_deduction_charges_the_package_of_its_waba_and_no_other(http: httpx.AsyncClient) -> None:
    await provision_v2(http)
    response = await post(http, "deduction", deduction_body(V2, "m1", waba_id="2102", quantity=4))
    assert response.status_code == 200, response.text
    body = response.json()
    # 2,000 of allowance, then 2,000 of the WABA's own credit line.
    assert [(a["quota_type"], a["amount"]) for a in body["allocations"]] == [("initial", 2_000), ("postpaid", 2_000)]
    assert (body["value_before"], body["value_after"]) == (2_000, -2_000)
    refused = await post(http, "deduction", deduction_body(V2, "m2", waba_id="2103"))
    assert refused.status_code == 400 and error_code(refused) == "quota_exceeded"
    shown = await info(http)
    assert shown["billing_version"] == "v2"
    per_waba = {w["waba_id"]: w for w in shown["wabas"]}
    assert per_waba["2101"]["balance"]["total"] == 5_000
    assert per_waba["2102"]["balance"]["total"] == -2_000
    assert per_waba["2102"]["balance"]["postpaid"] == {"limit": 3_000, "used": 2_000}
    assert per_waba["2102"]["spent_this_cycle"] == 4_000
    assert per_waba["2103"]["balance"]["available"] == 0
    # The top level is the sum of the packages.
    assert shown["balance"]["total"] == 3_000
    assert shown["balance"]["available"] == 5_000 + 1_000 + 0
    assert shown["balance"]["postpaid"] == {"limit": 3_000, "used": 2_000}
    assert shown["below_zero"] is True
    assert (await reconcile(http.context.service.database)).ok  # type: ignore[attr-defined]


async def test_a_v2_top_up_and_settlement_fund_the_package_of_their_waba(http: httpx.AsyncClient) -> None:
    await provision_v2(http)
    assert (await post(http, "deduction", deduction_body(V2, "m1", waba_id="2102", quantity=4))).status_code == 200
    no_waba = await post(http, "top-up", {"company_id": V2, "amount": 500, "payment_reference": "p0"})
    assert no_waba.status_code == 400 and error_code(no_waba) == "invalid_request"
    assert no_waba.json()["error"]["details"]["field"] == "waba_id"
    settled = await post(
        http, "settle-postpaid", {"company_id": V2, "amount": 1_500, "payment_reference": "s1", "waba_id": "2102"}
    )
    assert settled.status_code == 200, settled.text
    topped = await post(http, "top-up", {"company_id": V2, "amount": 700, "payment_reference": "p1", "waba_id": "2103"})
    assert topped.status_code == 200, topped.text
    unknown = await post(http, "top-up", {"company_id": V2, "amount": 1, "payment_reference": "p2", "waba_id": "999"})
    assert unknown.status_code == 404 and error_code(unknown) == "unknown_waba"
    per_waba = {w["waba_id"]: w["balance"] for w in (await info(http))["wabas"]}
    assert per_waba["2102"]["postpaid"]["used"] == 500
    assert per_waba["2103"]["additional"]["remaining"] == 700
    assert per_waba["2101"]["total"] == 5_000
    # 700 does not cover a 1,000 message, but a 700 one fits; its refund goes back to the same package.
    assert (await post(http, "deduction", deduction_body(V2, "m2", waba_id="2103"))).status_code == 400
    assert (await put(http, "/price-list/wa_utility_id", {"unit_price": 700})).status_code == 200
    cheap = deduction_body(V2, "m4", waba_id="2103")
    cheap["deduction_code"] = "wa_utility_id"
    assert (await post(http, "deduction", cheap)).status_code == 200
    refund = {"company_id": V2, "unique_code": "m4", "refund_code": "r4", "reason": "failed"}
    assert (await post(http, "refund", refund)).status_code == 200
    assert {w["waba_id"]: w["balance"] for w in (await info(http))["wabas"]}["2103"]["total"] == 700
    assert (await reconcile(http.context.service.database)).ok  # type: ignore[attr-defined]


async def test_a_v2_companys_package_is_what_each_new_waba_starts_with_unless_it_brings_its_own(
    http: httpx.AsyncClient,
) -> None:
    terms = {"allowance": 4_000, "postpaid_limit": 100, "cycle_anchor_day": 5}
    company = await put(http, f"/companies/{V2}", {"billing_version": "v2", "package": terms})
    assert company.status_code == 200, company.text
    assert company.json()["package"] == {**terms, "threshold_percent": None}
    plain = await put(http, f"/companies/{V2}/wabas/2101", {"name": "Plain"})
    assert plain.json()["package"] == {**terms, "threshold_percent": None}
    own = await put(http, f"/companies/{V2}/wabas/2102", {"name": "Own", "package": {"allowance": 9_000}})
    assert own.json()["package"] == {**terms, "allowance": 9_000, "threshold_percent": None}
    # Terms of a WABA's own package change through the WABA; a term left out is kept.
    changed = await put(http, f"/companies/{V2}/wabas/2101", {"name": "Renamed", "package": {"postpaid_limit": 900}})
    assert changed.status_code == 200
    assert changed.json()["package"] == {**terms, "postpaid_limit": 900, "threshold_percent": None}
    # The company's terms shape new WABAs only: the packages that exist keep theirs.
    assert (await put(http, f"/companies/{V2}", {"package": {"allowance": 1}})).json()["package"]["allowance"] == 1
    per_waba = {w["waba_id"]: w["balance"] for w in (await info(http))["wabas"]}
    assert (per_waba["2101"]["wabi"]["allowance"], per_waba["2102"]["wabi"]["allowance"]) == (4_000, 9_000)


async def test_a_waba_of_another_company_is_refused_on_every_path_that_creates_one(http: httpx.AsyncClient) -> None:
    await provision_v2(http)
    assert (await put(http, f"/companies/{V3}", {"billing_version": "v3"})).status_code == 200
    assert (await put(http, f"/companies/{V3}/wabas/2201", {"name": "Mine"})).status_code == 200
    for company_id, waba_id, body in (
        (V3, "2101", {"name": "Taken"}),
        (V2, "2201", {"name": "Taken", "package": {"allowance": 1}}),
    ):
        taken = await put(http, f"/companies/{company_id}/wabas/{waba_id}", body)
        assert taken.status_code == 409 and error_code(taken) == "waba_owned_elsewhere"
    assert [w["waba_id"] for w in (await info(http, V3))["wabas"]] == ["2201"]


async def test_with_the_flag_off_a_new_waba_of_a_v3_company_gets_its_own_package(http: httpx.AsyncClient) -> None:
    company = {"billing_version": "v3", "package": {"allowance": 10_000}}
    assert (await put(http, f"/companies/{V3}", company)).status_code == 200
    assert (await put(http, f"/companies/{V3}/wabas/2201", {"name": "Pooled"})).status_code == 200
    off = await put(http, f"/companies/{V3}", {"waba_save_organization_id": False})
    assert off.status_code == 200 and off.json()["waba_save_organization_id"] is False
    own = await put(http, f"/companies/{V3}/wabas/2202", {"name": "Own", "package": {"allowance": 3_000}})
    assert own.status_code == 200 and own.json()["package"]["allowance"] == 3_000
    # The flag shapes only new WABAs: the first stays in the pool, and its terms are the company's.
    stays = await put(http, f"/companies/{V3}/wabas/2201", {"name": "Pooled", "package": {"allowance": 1}})
    assert stays.status_code == 400 and stays.json()["error"]["details"]["field"] == "package"
    assert (await put(http, "/price-list/wa_marketing_id", {"unit_price": PRICE})).status_code == 200
    assert (await post(http, "deduction", deduction_body(V3, "a", waba_id="2201"))).status_code == 200
    assert (await post(http, "deduction", deduction_body(V3, "b", waba_id="2202", quantity=2))).status_code == 200
    # The pool's write alone cannot tell this company's view (it sums two packages): the cache must not take it.
    assert (await info(http, V3))["balance"]["total"] == 9_000 + 1_000
    assert (await post(http, "deduction", deduction_body(V3, "c", waba_id="2201"))).status_code == 200
    assert (await info(http, V3, cached=True))["balance"]["total"] == 8_000 + 1_000
    shown = await info(http, V3)
    per_waba = {w["waba_id"]: w for w in shown["wabas"]}
    assert "balance" not in per_waba["2201"]
    assert per_waba["2202"]["balance"]["wabi"]["remaining"] == 1_000
    assert shown["balance"]["total"] == 8_000 + 1_000
    back = await put(http, f"/companies/{V3}", {"waba_save_organization_id": None})
    assert back.json()["waba_save_organization_id"] is None
    joined = await put(http, f"/companies/{V3}/wabas/2203", {"name": "Joins"})
    assert joined.status_code == 200 and joined.json()["package"] is None


def test_the_flag_set_through_the_cli_shapes_the_next_new_waba_only(tmp_path) -> None:
    import asyncio

    from typer.testing import CliRunner

    from wabapool.cli.main import app
    from wabapool.service.models import CompanyTerms, PackageTerms, ProvisionedWaba

    url = f"sqlite:///{tmp_path / 'flags.db'}"
    upgrade(url)

    async def waba(waba_id: str, package: PackageTerms | None = None) -> ProvisionedWaba:
        database = Database(url)
        try:
            service = service_for(database)
            if waba_id == "2201" and package is None:
                await service.provision_company(V3, CompanyTerms(package=PackageTerms(allowance=10)))
            return await service.provision_waba(V3, waba_id, name=f"WABA {waba_id}", package=package)
        finally:
            await database.dispose()

    assert asyncio.run(waba("2201")).package is None
    environment = {"WABAPOOL_DATABASE_URL": url, "WABAPOOL_PII_KEYS": TEST_PII_KEYS}
    result = CliRunner().invoke(app, ["flags", "set", "off", "--company-id", str(V3)], env=environment)
    assert result.exit_code == 0, result.output
    assert "waba_save_organization_id = off; new WABAs get their own package" in " ".join(result.output.split())
    own = asyncio.run(waba("2202", PackageTerms(allowance=5)))
    assert own.package is not None and own.package.allowance == 5
    assert asyncio.run(waba("2201")).package is None  # an existing WABA stays where it spends
    result = CliRunner().invoke(app, ["flags", "show", "--company-id", "999"], env=environment)
    assert result.exit_code == 1 and "unknown company" in result.output


@pytest.mark.postgres
async def test_concurrent_batches_across_three_packages_never_deadlock_and_charge_each_exactly(
    postgres_url: str,
) -> None:
    """Two services (two engines, as two processes) send batches that each span all three packages, in
    shuffled order: every group locks its packages in id order, so none deadlocks, and each package ends
    exactly at what its applied deductions took."""
    import asyncio
    import random

    from sqlalchemy import func, select

    from wabapool.service import CompanyTerms, DeductionRequest, PackageTerms
    from wabapool.storage.tables import deduction_requests

    setup = Database(postgres_url)
    await truncate_all(setup)
    service = service_for(setup)
    await service.provision_company(V2, CompanyTerms(billing_version="v2"))
    for waba_id, (allowance, limit) in PACKAGES.items():
        await service.provision_waba(
            V2, waba_id, name=waba_id, package=PackageTerms(allowance=allowance * 10, postpaid_limit=limit * 10)
        )
    await service.set_price("wa_marketing_id", unit_price_minor=PRICE)
    await setup.dispose()
    databases = [Database(postgres_url), Database(postgres_url)]
    services = [service_for(database) for database in databases]
    rng = random.Random(14)
    batches = []
    for batch_index in range(12):
        items = [
            DeductionRequest(V2, "wa", "wa_marketing_id", f"b{batch_index}-{n}", rng.choice((1, 2, 3)), waba_id)
            for n, waba_id in enumerate(list(PACKAGES) * 10)
        ]
        rng.shuffle(items)
        batches.append(items)
    answers = await asyncio.gather(*(services[index % 2].deduct_batch(items) for index, items in enumerate(batches)))
    outcomes = [outcome for answer in answers for outcome in answer]
    assert {o.status for o in outcomes} <= {"applied", "rejected"}
    assert {o.error.code.value for o in outcomes if o.error is not None} <= {"quota_exceeded"}
    applied = {o.unique_code: o.result.amount for o in outcomes if o.status == "applied" and o.result}
    sent = {item.unique_code: item for items in batches for item in items}
    assert all(amount == sent[code].quantity * PRICE for code, amount in applied.items())
    by_waba = {waba_id: 0 for waba_id in PACKAGES}
    refused: dict[str, list[int]] = {waba_id: [] for waba_id in PACKAGES}
    for code, item in sent.items():
        if code in applied:
            by_waba[item.waba_id] += applied[code]
        else:
            refused[item.waba_id].append(item.quantity * PRICE)
    for waba_id, (allowance, limit) in PACKAGES.items():
        # Every package was asked for more than it holds: it took deductions until what was left was less than
        # every deduction it refused (a build refusing everything, or charging past the package, fails here).
        capacity = (allowance + limit) * 10
        assert refused[waba_id], waba_id
        assert 0 <= capacity - by_waba[waba_id] < min(refused[waba_id]), (waba_id, by_waba[waba_id])
    view = await services[0].balance(V2)
    shown = {w.waba_id: w for w in view.wabas}
    for waba_id, (allowance, limit) in PACKAGES.items():
        figures = shown[waba_id].balance
        assert figures is not None
        assert figures.total == allowance * 10 - by_waba[waba_id], waba_id
        assert figures.postpaid_used <= limit * 10
        assert shown[waba_id].spent_this_cycle == by_waba[waba_id]
    async with databases[0].read() as connection:
        stored = (await connection.execute(select(func.count()).select_from(deduction_requests))).scalar_one()
    assert stored == len(applied)
    assert (await reconcile(databases[0])).ok
    for database in databases:
        await database.dispose()


async def test_each_v2_package_resets_and_closes_its_own_statement_and_pages_list_each_once(
    http: httpx.AsyncClient,
) -> None:
    from datetime import timedelta

    await provision_v2(http)
    assert (await post(http, "deduction", deduction_body(V2, "m1", waba_id="2101", quantity=2))).status_code == 200
    assert (await post(http, "deduction", deduction_body(V2, "m2", waba_id="2102", quantity=3))).status_code == 200
    service = http.context.service  # type: ignore[attr-defined]
    reset = await service.reset_cycles(at=service.clock() + timedelta(days=40))
    assert reset[V2] >= 3  # every package, each at least once
    shown = await info(http)
    per_waba = {w["waba_id"]: w["balance"] for w in shown["wabas"]}
    assert per_waba["2101"]["wabi"]["remaining"] == 5_000  # refilled, nothing rolled over
    assert per_waba["2102"]["postpaid"]["used"] == 1_000  # postpaid use stays until settled
    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = await http.get(f"{PUBLIC}/statements", params=params, headers=bearer(V2))
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [(s["waba_id"], s["cycle"]["starts_at"]) for s in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) and {waba_id for waba_id, _ in seen} == set(PACKAGES)
    first_cycle = min(start for _, start in seen)
    spent = {}
    for statement in (await http.get(f"{PUBLIC}/statements", params={"limit": 50}, headers=bearer(V2))).json()["data"]:
        if statement["cycle"]["starts_at"] == first_cycle:
            spent[statement["waba_id"]] = (statement["spent"], statement["deductions"])
    assert spent == {"2101": (2_000, 1), "2102": (3_000, 1), "2103": (0, 0)}
