"""Spending caps as pure rules (domain.caps) and inside the pool's run of deductions: no database."""

from __future__ import annotations

import pytest

from tests.unit.builders import opened_pool
from wabapool.domain import operations
from wabapool.domain.caps import CapRun, CapState, SpendCap, make_cap, refusal
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.events import EventType

WABA = "1001"


def _run(cap: SpendCap, spent: int = 0, **flags: bool) -> CapRun:
    return CapRun({WABA: CapState(WABA, cap, spent, **flags)}, company_id=7, cycle_label="2026-11-01")


def test_make_cap_defaults_the_warning_to_80_percent_and_all_categories() -> None:
    assert make_cap(500, None, None) == SpendCap(500, None, 80)


@pytest.mark.parametrize(
    ("amount", "categories", "warn", "code"),
    [
        (-1, None, None, Rejection.INVALID_REQUEST),
        (True, None, None, Rejection.INVALID_REQUEST),
        (2**53, None, None, Rejection.AMOUNT_TOO_LARGE),
        (5, [], None, Rejection.INVALID_REQUEST),
        (5, ["spam"], None, Rejection.INVALID_REQUEST),
        (5, ["marketing", "marketing"], None, Rejection.INVALID_REQUEST),
        (5, None, 0, Rejection.INVALID_REQUEST),
        (5, None, 101, Rejection.INVALID_REQUEST),
    ],
)
def test_make_cap_refuses_bad_values_naming_the_field(
    amount: object, categories: list[str] | None, warn: object, code: Rejection
) -> None:
    with pytest.raises(BillingError) as caught:
        make_cap(amount, categories, warn)
    assert caught.value.code is code
    assert str(caught.value.details["field"]).startswith("spend_cap.")


def test_a_category_cap_covers_its_categories_and_uncategorised_messages_only() -> None:
    cap = SpendCap(100, frozenset({"marketing"}))
    assert cap.covers("marketing") and cap.covers(None)
    assert not cap.covers("authentication")


def test_refusal_allows_spend_up_to_exactly_the_cap() -> None:
    state = CapState(WABA, SpendCap(100), spent_minor=60)
    assert refusal(state, "marketing", 40) is None
    error = refusal(state, "marketing", 41)
    assert error is not None and error.code is Rejection.WABA_CAP_EXCEEDED
    assert error.details == {"waba_id": WABA, "cap": 100, "spent": 60, "categories": None}


def test_free_and_uncovered_messages_pass_a_full_cap() -> None:
    state = CapState(WABA, SpendCap(0, frozenset({"marketing"})))
    assert refusal(state, "marketing", 0) is None
    assert refusal(state, "utility", 10) is None
    assert refusal(state, "marketing", 1) is not None


def test_the_warning_and_the_reach_are_raised_once_each() -> None:
    run = _run(SpendCap(100, None, 50))
    run.spent(WABA, "marketing", 49)
    assert run.events == []
    run.spent(WABA, "marketing", 1)
    run.spent(WABA, "marketing", 10)
    assert [e.event_type for e in run.events] == [EventType.WABA_CAP_WARNING]
    assert run.admit(WABA, "marketing", 41) is not None
    assert run.admit(WABA, "marketing", 41) is not None
    assert [e.event_type for e in run.events] == [EventType.WABA_CAP_WARNING, EventType.WABA_CAP_REACHED]
    assert {e.dedup_key for e in run.events} == {f"7:{WABA}:2026-11-01"}
    assert [s.waba_id for s in run.raised()] == [WABA]


def test_spend_landing_exactly_on_the_cap_is_its_reach() -> None:
    run = _run(SpendCap(100, None, 100))
    run.spent(WABA, None, 100)
    assert [e.event_type for e in run.events] == [EventType.WABA_CAP_WARNING, EventType.WABA_CAP_REACHED]


def test_events_raised_earlier_in_the_cycle_are_not_raised_again() -> None:
    run = _run(SpendCap(100), spent=90, warned=True, reached=True)
    assert run.admit(WABA, "marketing", 20) is not None
    assert run.events == [] and run.raised() == []


def test_the_cap_is_checked_before_the_pool_and_a_pool_refusal_does_not_count() -> None:
    pool = opened_pool(allowance=100, postpaid_limit=0)
    run = _run(SpendCap(150))
    outcome = operations.deduct_many(pool, [80, 50, 60, 70], caps=run, spenders=[(WABA, "marketing")] * 4)
    codes = [o.code if isinstance(o, BillingError) else "applied" for o in outcome.outcomes]
    # 80 applied leaves the pool 20: the rest fit the cap (80 + 70 = 150) but not the pool, and count for nothing.
    assert codes == ["applied", Rejection.QUOTA_EXCEEDED, Rejection.QUOTA_EXCEEDED, Rejection.QUOTA_EXCEEDED]
    assert run.states[WABA].spent_minor == 80
    refused = operations.deduct_many(pool, [200], caps=_run(SpendCap(150)), spenders=[(WABA, None)])
    assert isinstance(refused.outcomes[0], BillingError)
    assert refused.outcomes[0].code is Rejection.WABA_CAP_EXCEEDED


def test_without_caps_a_run_is_the_pools_alone() -> None:
    pool = opened_pool(allowance=100, postpaid_limit=50)
    plain = operations.deduct_many(pool, [60, 60, 40])
    uncapped = operations.deduct_many(
        pool, [60, 60, 40], caps=CapRun({}, company_id=7, cycle_label="x"), spenders=[(WABA, None)] * 3
    )
    assert plain.state == uncapped.state
    assert [type(o) for o in plain.outcomes] == [type(o) for o in uncapped.outcomes]
