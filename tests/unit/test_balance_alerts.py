"""The company's own alerts and auto-recharge, against an independent model of the rules (pure, no database).

The model is written from the issue's sentences, not from the code: an alert
holds when prepaid money left is at or under `percent% x funded base` (checked
as `left * 100 <= percent * base`) or under its amount; it fires when a change
leaves the pool under it while armed, and is armed again when a funding lifts
the pool above it, or the cycle resets. A request is raised when a deduction
leaves `available` under `below`, none is open and fewer than `max_per_cycle`
were raised this cycle; a top-up with its reference closes it; 24 h open
expires it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wabapool.domain import alerts, operations
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.events import EventType

T0 = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)


def pool(
    *,
    allowance: int = 1_000,
    postpaid_limit: int = 0,
    alert_list: tuple[alerts.BalanceAlert, ...] = (),
    recharge: alerts.AutoRecharge | None = None,
) -> operations.PoolState:
    opened = operations.open_pool(
        company_id=7,
        allowance_minor=allowance,
        postpaid_limit_minor=postpaid_limit,
        anchor_day=1,
        timezone="Asia/Jakarta",
        threshold_percent=None,
        at=T0,
    ).state
    return replace(opened, alerting=alerts.Alerting(alert_list, recharge, "IDR"))


def types(change_events) -> list[str]:
    """The event types of a change, leaving out the 40% rule's own (it runs beside the company's alerts)."""
    return [event.event_type.value for event in change_events if event.event_type is not EventType.BALANCE_LOW]


PCT = alerts.AlertKind.PERCENT
AMT = alerts.AlertKind.AMOUNT


def test_percent_alert_fires_once_per_crossing_and_a_top_up_above_it_rearms_it() -> None:
    state = pool(alert_list=(alerts.BalanceAlert(PCT, 50),))
    first = operations.deduct(state, 500, at=T0)  # 500 left of 1,000: at 50 %
    assert types(first.events) == ["balance_alert"]
    assert first.events[0].payload["alert"] == {"kind": "percent", "value": 50}
    again = operations.deduct(first.state, 10, at=T0)
    assert types(again.events) == []
    lifted = operations.top_up(again.state, 2_000, payment_reference="p1")  # 2,490 of 3,000: above 50 %
    assert lifted.state.alerts_fired == frozenset()
    crossed_again = operations.deduct(lifted.state, 1_000, at=T0)  # 1,490 of 3,000
    assert types(crossed_again.events) == ["balance_alert"]


def test_a_top_up_that_leaves_the_pool_under_an_alert_keeps_it_fired() -> None:
    state = pool(alert_list=(alerts.BalanceAlert(AMT, 300),))
    fired = operations.deduct(state, 800, at=T0)  # 200 left
    assert types(fired.events) == ["balance_alert"]
    topped = operations.top_up(fired.state, 50, payment_reference="p1")  # 250 left: still under 300
    assert topped.state.alerts_fired == {"amount:300"}
    assert types(operations.deduct(topped.state, 10, at=T0).events) == []


def test_one_deduction_past_several_alerts_fires_each_once_in_the_same_change() -> None:
    state = pool(alert_list=(alerts.BalanceAlert(PCT, 80), alerts.BalanceAlert(PCT, 20), alerts.BalanceAlert(AMT, 500)))
    change = operations.deduct(state, 900, at=T0)
    assert sorted(e.payload["alert"]["value"] for e in change.events if "alert" in e.payload) == [20, 80, 500]


def test_the_cycle_reset_rearms_every_alert_and_the_request_count() -> None:
    state = pool(alert_list=(alerts.BalanceAlert(PCT, 50),), recharge=alerts.AutoRecharge(900, 500, 1))
    spent = operations.deduct(state, 600, at=T0)
    assert spent.state.alerts_fired and spent.state.top_ups_requested == 1
    reset = operations.catch_up(spent.state, datetime(2026, 12, 2, tzinfo=UTC))
    assert reset.state.alerts_fired == frozenset()
    assert reset.state.top_ups_requested == 0


def test_auto_recharge_raises_one_request_with_its_reference_and_the_top_up_with_it_closes_it() -> None:
    state = pool(recharge=alerts.AutoRecharge(below_minor=400, amount_minor=500_000))
    change = operations.deduct(state, 700, at=T0)  # available 300 < 400
    assert types(change.events) == ["top_up_requested"]
    data = next(e.payload for e in change.events if e.event_type is EventType.TOP_UP_REQUESTED)
    assert data["amount"] == 500_000 and data["currency"] == "IDR" and data["available"] == 300
    reference = data["payment_reference"]
    assert change.state.top_up_request == alerts.TopUpRequest(reference, 500_000, T0)
    more = operations.deduct(change.state, 10, at=T0)
    assert types(more.events) == []  # one open request at a time
    other = operations.top_up(more.state, 100, payment_reference="someone-else")
    assert other.state.top_up_request is not None  # only its own reference closes it
    paid = operations.top_up(other.state, 500_000, payment_reference=reference)
    assert paid.state.top_up_request is None


def test_auto_recharge_stops_at_max_per_cycle_whatever_the_traffic() -> None:
    state = pool(allowance=10_000, recharge=alerts.AutoRecharge(9_000, 100, max_per_cycle=2))
    references = []
    for _ in range(5):
        change = operations.deduct(state, 500, at=T0)
        references += [e.payload["payment_reference"] for e in change.events if "payment_reference" in e.payload]
        state = change.state
        if state.top_up_request is not None:
            state = operations.top_up(state, 100, payment_reference=state.top_up_request.payment_reference).state
    assert len(references) == 2 and len(set(references)) == 2
    assert state.top_ups_requested == 2


def test_an_open_request_expires_after_24_hours_and_the_next_deduction_may_raise_a_new_one() -> None:
    state = pool(recharge=alerts.AutoRecharge(400, 500))
    state = operations.deduct(state, 700, at=T0).state
    early = operations.expire_top_up_request(state, T0 + timedelta(hours=23, minutes=59))
    assert early.events == [] and early.state.top_up_request is not None
    expired = operations.expire_top_up_request(state, T0 + timedelta(hours=24))
    assert types(expired.events) == ["top_up_request_expired"]
    assert expired.state.top_up_request is None
    later = T0 + timedelta(hours=25)
    renewed = operations.deduct(expired.state, 10, at=later)
    assert types(renewed.events) == ["top_up_requested"]
    assert renewed.state.top_up_request.requested_at == later
    assert renewed.state.top_up_request.payment_reference != state.top_up_request.payment_reference


def test_a_refused_deduction_raises_nothing() -> None:
    state = pool(allowance=100, alert_list=(alerts.BalanceAlert(AMT, 50),), recharge=alerts.AutoRecharge(90, 10))
    with pytest.raises(BillingError) as refused:
        operations.deduct(state, 101, at=T0)
    assert refused.value.code is Rejection.QUOTA_EXCEEDED


@pytest.mark.parametrize(
    ("raw", "field_name"),
    [
        ([{"kind": "percent", "value": 0}], "alerts[0].value"),
        ([{"kind": "percent", "value": 101}], "alerts[0].value"),
        ([{"kind": "amount", "value": 2**53}], "alerts[0].value"),
        ([{"kind": "ratio", "value": 5}], "alerts[0].kind"),
        ([{"kind": "amount", "value": 1.5}], "alerts[0].value"),
        ([{"kind": "amount", "value": True}], "alerts[0].value"),
        ([{"kind": "amount", "value": 5}, {"kind": "amount", "value": 5}], "alerts[1]"),
        ([{"kind": "amount", "value": v} for v in range(1, 7)], "alerts"),
    ],
)
def test_bad_alerts_are_refused_naming_the_field(raw: object, field_name: str) -> None:
    with pytest.raises(BillingError) as refused:
        alerts.parse_alerts(raw)
    assert refused.value.code is Rejection.INVALID_REQUEST
    assert refused.value.details["field"] == field_name


@pytest.mark.parametrize(
    ("raw", "field_name"),
    [
        ({"below": 0, "amount": 5}, "auto_recharge.below"),
        ({"below": 5, "amount": 2**53}, "auto_recharge.amount"),
        ({"below": 5, "amount": 5, "max_per_cycle": 0}, "auto_recharge.max_per_cycle"),
        ({"below": 5}, "auto_recharge"),
        ({"below": 5, "amount": 5, "extra": 1}, "auto_recharge"),
    ],
)
def test_bad_auto_recharge_is_refused_naming_the_field(raw: object, field_name: str) -> None:
    with pytest.raises(BillingError) as refused:
        alerts.parse_auto_recharge(raw)
    assert refused.value.details["field"] == field_name


# -- the model --------------------------------------------------------------------------------------------


@dataclass
class Model:
    """Prepaid money left, the funded base, postpaid room; fired alerts, the open request, requests this cycle."""

    prepaid: int
    base: int
    postpaid_room: int
    alert_list: tuple[tuple[str, int], ...]
    below: int
    amount: int
    max_per_cycle: int
    fired: set[tuple[str, int]] = field(default_factory=set)
    open_reference: str | None = None
    opened_at: datetime | None = None
    raised: int = 0
    events: list[str] = field(default_factory=list)

    def under(self, alert: tuple[str, int]) -> bool:
        kind, value = alert
        return self.prepaid * 100 <= value * self.base if kind == "percent" else self.prepaid <= value

    def deduct(self, amount: int, at: datetime) -> bool:
        if amount > self.prepaid + self.postpaid_room:
            return False
        taken = min(amount, self.prepaid)
        self.prepaid -= taken
        self.postpaid_room -= amount - taken
        for alert in self.alert_list:
            if alert not in self.fired and self.under(alert):
                self.fired.add(alert)
                self.events.append("balance_alert")
        available = self.prepaid + self.postpaid_room
        if available < self.below and self.open_reference is None and self.raised < self.max_per_cycle:
            self.raised += 1
            self.open_reference = f"request {self.raised}"
            self.opened_at = at
            self.events.append("top_up_requested")
        return True

    def top_up(self, amount: int, pays_request: bool, postpaid_limit: int) -> None:
        used = postpaid_limit - self.postpaid_room
        repaid = min(amount, used)
        self.postpaid_room += repaid
        self.prepaid += amount - repaid
        self.base += amount - repaid
        if pays_request:
            self.open_reference = None
        self.fired = {alert for alert in self.fired if self.under(alert)}

    def expire(self, at: datetime) -> None:
        if (
            self.opened_at is not None
            and self.open_reference is not None
            and at - self.opened_at >= timedelta(hours=24)
        ):
            self.open_reference = None
            self.events.append("top_up_request_expired")


alert_strategy = st.one_of(
    st.tuples(st.just("percent"), st.integers(1, 100)), st.tuples(st.just("amount"), st.integers(1, 3_000))
)
operation = st.one_of(
    st.tuples(st.just("deduct"), st.integers(1, 400)),
    st.tuples(st.just("top_up"), st.integers(1, 1_500)),
    st.tuples(st.just("pay_request"), st.integers(1, 1_500)),
    st.tuples(st.just("wait_hours"), st.integers(1, 30)),
)


@settings(max_examples=300, deadline=None)
@given(
    alert_list=st.lists(alert_strategy, max_size=5, unique=True),
    below=st.integers(1, 2_000),
    max_per_cycle=st.integers(1, 4),
    postpaid_limit=st.integers(0, 500),
    operations_list=st.lists(operation, max_size=40),
)
def test_alerts_and_auto_recharge_follow_the_model(
    alert_list: list[tuple[str, int]],
    below: int,
    max_per_cycle: int,
    postpaid_limit: int,
    operations_list: list[tuple[str, int]],
) -> None:
    domain_alerts = tuple(alerts.BalanceAlert(alerts.AlertKind(kind), value) for kind, value in alert_list)
    recharge = alerts.AutoRecharge(below, 1_000, max_per_cycle)
    state = pool(allowance=2_000, postpaid_limit=postpaid_limit, alert_list=domain_alerts, recharge=recharge)
    model = Model(2_000, 2_000, postpaid_limit, tuple(alert_list), below, 1_000, max_per_cycle)
    at = T0
    seen: list[str] = []
    for name, value in operations_list:
        if name == "deduct":
            applied = model.deduct(value, at)
            try:
                change = operations.deduct(state, value, at=at)
            except BillingError:
                assert not applied
                continue
            assert applied
        elif name in ("top_up", "pay_request"):
            request = state.top_up_request
            pays = name == "pay_request" and request is not None
            model.top_up(value, pays, postpaid_limit)
            reference = request.payment_reference if pays and request else f"manual-{len(seen)}"
            change = operations.top_up(state, value, payment_reference=reference)
        else:
            at += timedelta(hours=value)
            model.expire(at)
            change = operations.expire_top_up_request(state, at)
        state = change.state
        seen += [e.event_type.value for e in change.events if e.event_type.value != "balance_low"]
        seen = [t for t in seen if t != "balance_topped_up"]
        assert state.buckets.spendable == model.prepaid
        assert (state.top_up_request is None) == (model.open_reference is None)
        assert state.top_ups_requested == model.raised
        assert state.alerts_fired == {f"{kind}:{value}" for kind, value in model.fired}
    assert seen == model.events
    assert seen.count("top_up_requested") <= max_per_cycle
