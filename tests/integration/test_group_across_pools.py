"""A group commit across pools answers every item exactly as one-at-a-time application would.

Hypothesis draws a group mixing companies, fresh deductions, replays of codes
stored before the group and of codes taken earlier in it, idempotency
conflicts, unknown WABAs and pools running dry into `quota_exceeded`. The same
items go once as ONE group (`DeductionGroups.apply`, one transaction over every
company's pool) and once one at a time against twin companies in the same
state; every answer (status, rejection code, amount, figures before and after,
allocations) and every pool's final balance must be the same.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests import router
from tests.conftest import service_for, truncate_all
from wabapool.service import BillingService, CompanyTerms, DeductionRequest, PackageTerms
from wabapool.service.deduction_rows import Prepared
from wabapool.service.deductions import DeductionGroups
from wabapool.service.models import BatchItemResult
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade
from wabapool.storage.tables import outbox_events

NOW = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)
COMPANIES = 3
TWIN_OFFSET = 50  # the one-at-a-time side's company ids: the group side's plus this
UNIT_PRICE_MINOR = 10
# Small pools so that a group of a few dozen items runs some of them dry (allowance, then postpaid, then refused).
ALLOWANCE_MINOR = 100
POSTPAID_LIMIT_MINOR = 50
_next_base = itertools.count(1)

Drawn = tuple[int, str, int, bool]  # company index, code, quantity, a WABA of the company (else an unknown one)

items_strategy = st.tuples(
    st.integers(0, COMPANIES - 1),
    st.sampled_from([f"c{i}" for i in range(8)]),
    st.integers(1, 6),
    st.sampled_from([True, True, True, False]),  # now and then a WABA the company does not have
)


def _waba(company_id: int) -> str:
    return f"{company_id}0001"


def _request(company_id: int, code: str, quantity: int, known_waba: bool) -> DeductionRequest:
    waba_id = _waba(company_id) if known_waba else "999999"
    return DeductionRequest(company_id, "wa", "wa_marketing_id", code, quantity, waba_id)


def _shape(result: BatchItemResult) -> tuple[Any, ...]:
    """An answer without the row id (the two sides' rows have different ids)."""
    if result.error is not None:
        return (result.unique_code, result.status, result.error.code.value, result.error.details)
    outcome = result.result
    assert outcome is not None
    return (
        result.unique_code,
        result.status,
        outcome.amount,
        outcome.value_before,
        outcome.value_after,
        outcome.credited_to,
        outcome.allocations,
        outcome.replayed,
    )


async def _provision(service: BillingService, company_id: int) -> None:
    await service.provision_company(
        company_id,
        CompanyTerms(
            package=PackageTerms(allowance=ALLOWANCE_MINOR, postpaid_limit=POSTPAID_LIMIT_MINOR, cycle_anchor_day=1)
        ),
    )
    await service.provision_waba(company_id, _waba(company_id), name="WABA")


async def _check_one_group_equals_one_at_a_time(url: str, stored: list[Drawn], group: list[Drawn]) -> None:
    database = Database(url)
    try:
        service = service_for(database, clock=lambda: NOW)
        await service.set_price("wa_marketing_id", unit_price_minor=UNIT_PRICE_MINOR, effective_from=NOW)
        base = next(_next_base) * 100 * TWIN_OFFSET
        grouped = [base + index for index in range(COMPANIES)]
        alone = [company_id + TWIN_OFFSET for company_id in grouped]
        for company_id in grouped + alone:
            await _provision(service, company_id)
        for index, code, quantity, known in stored:  # the same history on both sides, one at a time
            for side in (grouped, alone):
                await service.deduct_one(_request(side[index], code, quantity, known))

        items = [
            Prepared.of(_request(grouped[index], code, quantity, known), service.sealer)
            for index, code, quantity, known in group
        ]
        in_one = await DeductionGroups(service.context).apply(items)
        one_by_one = [
            await service.deduct_one(_request(alone[index], code, quantity, known))
            for index, code, quantity, known in group
        ]

        assert [_shape(r) for r in in_one] == [_shape(r) for r in one_by_one]
        for group_company, alone_company in zip(grouped, alone, strict=True):
            assert _figures(await service.balance(group_company)) == _figures(await service.balance(alone_company))
    finally:
        await database.dispose()


def _figures(view: Any) -> tuple[Any, ...]:
    return (
        view.total,
        view.available,
        view.initial_remaining,
        view.additional_remaining,
        view.postpaid_used,
        view.below_zero,
        view.low_balance,
    )


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('groups') / 'wabapool.db'}"
    upgrade(url)
    yield url


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stored=st.lists(items_strategy, max_size=6), group=st.lists(items_strategy, min_size=1, max_size=30))
def test_a_group_across_companies_answers_each_item_as_one_at_a_time_on_sqlite(
    sqlite_url: str, stored: list[Drawn], group: list[Drawn]
) -> None:
    asyncio.run(_check_one_group_equals_one_at_a_time(sqlite_url, stored, group))


@pytest.mark.postgres
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stored=st.lists(items_strategy, max_size=6), group=st.lists(items_strategy, min_size=1, max_size=30))
def test_a_group_across_companies_answers_each_item_as_one_at_a_time_on_postgres(
    postgres_url: str, stored: list[Drawn], group: list[Drawn]
) -> None:
    asyncio.run(_check_one_group_equals_one_at_a_time(postgres_url, stored, group))


async def _priced_service(database: Database) -> BillingService:
    """A service (one process) on an emptied database, with the price every test here charges."""
    await truncate_all(database)
    service = service_for(database, clock=lambda: NOW)
    await service.set_price("wa_marketing_id", unit_price_minor=UNIT_PRICE_MINOR, effective_from=NOW)
    return service


@pytest.mark.postgres
async def test_a_group_meeting_many_companies_first_looks_up_their_wabas_in_one_statement(
    postgres_url: str, statement_recorder: router.Recorder
) -> None:
    database = Database(postgres_url)
    try:
        service = await _priced_service(database)
        companies = [7001 + index for index in range(12)]
        for company_id in companies:
            await _provision(service, company_id)
        unknown_company = 7999
        items = [
            Prepared.of(_request(company_id, "first", 1, True), service.sealer)
            for company_id in [*companies, unknown_company]
        ]
        statement_recorder.clear()
        answers = await DeductionGroups(service.context).apply(items)  # a process that remembers nothing yet
        sent = [statement.sql for statement in statement_recorder.statements if statement.origin]
    finally:
        await database.dispose()
    assert [answer.status for answer in answers] == ["applied"] * len(companies) + ["rejected"]
    assert answers[-1].error is not None and answers[-1].error.code.value == "unknown_company"
    lookups = [sql for sql in sent if "FROM whatsapp_packages" in sql and "FOR UPDATE" not in sql]
    company_checks = [sql for sql in sent if sql.lstrip().startswith("SELECT companies.company_id")]
    assert len(lookups) == 1, "\n\n".join(lookups)
    assert len(company_checks) == 1, "\n\n".join(company_checks)


async def _dry_companies(service: BillingService, first_id: int) -> list[int]:
    """Six companies provisioned, each charged once (WABAs and prices now remembered by `service`)."""
    companies = [first_id + index for index in range(6)]
    for company_id in companies:
        await _provision(service, company_id)
    await DeductionGroups(service.context).apply(
        [Prepared.of(_request(company_id, "warm", 1, True), service.sealer) for company_id in companies]
    )
    return companies


def _run_dry(service: BillingService, companies: list[int]) -> list[Prepared]:
    """A deduction per company that takes its pool from 90 to -20 (110 charged of the 90 left of an allowance of
    100): the pool's warning state moves and it raises `balance_low` and `balance_below_zero`."""
    return [Prepared.of(_request(company_id, "dry", 11, True), service.sealer) for company_id in companies]


@pytest.mark.postgres
async def test_a_group_whose_pools_run_below_zero_writes_their_states_and_events_in_its_one_write(
    postgres_url: str, statement_recorder: router.Recorder
) -> None:
    database = Database(postgres_url)
    try:
        service = await _priced_service(database)
        groups = DeductionGroups(service.context)
        companies = await _dry_companies(service, 7101)
        statement_recorder.clear()
        answers = await groups.apply(_run_dry(service, companies))
        sent = [statement.sql.lstrip() for statement in statement_recorder.statements if statement.origin]
        views = [await service.balance(company_id) for company_id in companies]
        async with database.read() as connection:
            raised = (
                await connection.execute(
                    select(outbox_events.c.company_id, outbox_events.c.event_type).where(
                        outbox_events.c.company_id.in_(companies)
                    )
                )
            ).all()
    finally:
        await database.dispose()
    assert [answer.status for answer in answers] == ["applied"] * len(companies)
    writes = [sql for sql in sent if "INSERT INTO deduction_requests" in sql]
    assert len(writes) == 1 and "INSERT INTO outbox_events" in writes[0], "\n\n".join(sent)
    one_by_one = [sql for sql in sent if sql.startswith(("UPDATE organization_packages", "INSERT INTO outbox_events"))]
    assert one_by_one == [], "a pool's state or events went in a statement of their own"
    assert all(view.below_zero and view.low_balance for view in views)
    assert sorted(raised) == sorted(
        (company_id, event) for company_id in companies for event in ("balance_low", "balance_below_zero")
    )


@pytest.mark.postgres
async def test_the_worker_is_woken_by_a_group_that_raised_events_and_not_by_one_that_did_not(
    postgres_url: str,
) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(postgres_url)
    await listener.add_listener("wabapool_outbox", lambda *notified: heard.put_nowait(notified[-1]))
    database = Database(postgres_url)

    async def wakes_until_marker(marker: str) -> list[str]:
        """The wake-ups heard before `marker`, notified now: notifications arrive in commit order."""
        await listener.execute("SELECT pg_notify('wabapool_outbox', $1)", marker)
        payloads = []
        while (payload := await asyncio.wait_for(heard.get(), timeout=30)) != marker:
            payloads.append(payload)
        return payloads

    try:
        service = await _priced_service(database)
        companies = await _dry_companies(service, 7201)
        await wakes_until_marker("after provisioning")
        groups = DeductionGroups(service.context)
        quiet = [Prepared.of(_request(company_id, "quiet", 1, True), service.sealer) for company_id in companies]
        assert [answer.status for answer in await groups.apply(quiet)] == ["applied"] * len(companies)
        assert await wakes_until_marker("after the quiet group") == []
        assert [answer.status for answer in await groups.apply(_run_dry(service, companies))] == ["applied"] * 6
        assert await wakes_until_marker("after the group that ran pools dry") == [""]
    finally:
        await database.dispose()
        await listener.close()
