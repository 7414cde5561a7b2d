"""The deduction group's decision step, on plain data: splits, exhaustion and replays in one group."""

from __future__ import annotations

from types import SimpleNamespace

from tests.unit.builders import COMPANY_ID, NOW, pool_state, utc
from wabapool.domain.deduction import Applied, Refused, RepeatInGroup, Replay, decide
from wabapool.domain.events import EventType
from wabapool.domain.pool import QuotaType
from wabapool.domain.pricing import PriceBook, PriceEntry
from wabapool.service.deduction_rows import Prepared
from wabapool.service.deductions import GroupApplied
from wabapool.service.models import DeductionRequest

WABA = "1001"
POOL = 7  # the package id the WABA charges
PACKAGES: dict[str, int | None] = {WABA: POOL}
BOOK = PriceBook([PriceEntry("wa_marketing_id", 100, utc(2025, 7, 1))], company_id=COMPANY_ID, at=NOW)


def item(code: str, quantity: int = 1, *, waba_id: str = WABA, deduction_code: str = "wa_marketing_id") -> Prepared:
    request = DeductionRequest(COMPANY_ID, "wa", deduction_code, code, quantity, waba_id)
    return Prepared(request, request.payload_bytes().hex(), None, None, None)


def test_a_group_splits_across_buckets_in_order_then_refuses_what_no_longer_fits() -> None:
    state = pool_state(initial_allowance=250, initial=250, additional=100, postpaid_limit=50)  # 400 available
    decided = decide([item("a", 2), item("b", 1), item("c", 1), item("d", 1)], {POOL: state}, {}, PACKAGES, BOOK)
    a, b, c, d = decided.outcomes
    assert isinstance(a, Applied) and [p.quota_type for p in a.charged.portions] == [QuotaType.INITIAL]
    assert isinstance(b, Applied)
    assert [(p.quota_type, p.amount_minor) for p in b.charged.portions] == [
        (QuotaType.INITIAL, 50),
        (QuotaType.ADDITIONAL, 50),
    ]
    assert isinstance(c, Applied)
    assert [(p.quota_type, p.amount_minor) for p in c.charged.portions] == [
        (QuotaType.ADDITIONAL, 50),
        (QuotaType.POSTPAID, 50),
    ]
    assert isinstance(d, Refused) and d.error.code.value == "quota_exceeded"
    assert decided.states[POOL].buckets.available == 0
    assert (a.value_before, a.value_after, c.value_after) == (350, 150, -50)
    assert sum(one.amount for one in decided.applied) == 400
    assert [e.event_type for e in decided.events[POOL]] == [EventType.BALANCE_LOW, EventType.BALANCE_BELOW_ZERO]


def test_a_code_repeated_in_the_group_is_a_replay_of_the_first_and_another_payload_a_conflict() -> None:
    state = pool_state()
    decided = decide([item("a"), item("a"), item("a", 3)], {POOL: state}, {}, PACKAGES, BOOK)
    first, repeat, conflict = decided.outcomes
    assert isinstance(first, Applied)
    assert isinstance(repeat, RepeatInGroup) and repeat.first is first
    assert isinstance(conflict, Refused)
    assert conflict.error.code.value == "idempotency_conflict"
    assert len(decided.applied) == 1 and decided.states[POOL].buckets.initial_remaining == 900


def test_a_code_already_stored_replays_its_row_without_charging_again() -> None:
    stored = SimpleNamespace(
        id=41,
        unique_code="old",
        payload_hash=item("old").payload_hash,
        amount_minor=100,
        value_before_minor=1000,
        value_after_minor=900,
        credited_to="wa_balance_initial",
        allocations=[{"credited_to": "wa_balance_initial", "quota_type": "initial", "amount": 100}],
    )
    decided = decide([item("old"), item("new")], {POOL: pool_state()}, {"old": stored}, PACKAGES, BOOK)
    replayed, applied = decided.outcomes
    assert isinstance(replayed, Replay) and replayed.stored is stored
    (answer,) = GroupApplied([replayed], {}, False).results()
    assert answer.status == "replayed" and answer.result is not None and answer.result.deduction_id == 41
    assert isinstance(applied, Applied) and decided.states[POOL].buckets.initial_remaining == 900


def test_an_unknown_waba_or_price_is_refused_and_takes_nothing() -> None:
    decided = decide(
        [item("w", waba_id="elsewhere"), item("p", deduction_code="wa_unpriced_id")],
        {POOL: pool_state()},
        {},
        PACKAGES,
        BOOK,
    )
    codes = [o.error.code.value for o in decided.outcomes if isinstance(o, Refused)]
    assert codes == ["unknown_waba", "unknown_deduction_code"]
    assert decided.applied == [] and decided.states[POOL] == pool_state()


def test_each_waba_charges_its_own_package_and_one_running_dry_leaves_the_other_untouched() -> None:
    rich, poor = (
        pool_state(initial_allowance=1000, initial=1000),
        pool_state(initial_allowance=100, initial=100, additional=0, postpaid_limit=0),
    )
    packages: dict[str, int | None] = {"rich": 1, "poor": 2, "none": None}
    decided = decide(
        [item("a", waba_id="poor"), item("b", waba_id="poor"), item("c", waba_id="rich"), item("d", waba_id="none")],
        {1: rich, 2: poor},
        {},
        packages,
        BOOK,
    )
    a, b, c, d = decided.outcomes
    assert isinstance(a, Applied) and a.package_id == 2
    assert isinstance(b, Refused) and b.error.code.value == "quota_exceeded"
    assert isinstance(c, Applied) and c.package_id == 1
    assert isinstance(d, Refused) and d.error.code.value == "not_shared_pool"
    assert decided.states[1].buckets.initial_remaining == 900
    assert decided.states[2].buckets.initial_remaining == 0
    assert decided.events[1] == []
