"""The company's own balance alerts and its auto-recharge: when each fires, and when it is armed again.

An alert is `{kind, value}`: `percent` of the cycle's funded base (the
`balance_low` rule with the company's own percentage) or `amount`, a number of
minor units of prepaid money left. Both look at what `balance_low` looks at,
`initial.remaining + additional.remaining` (`Buckets.spendable`), so alerts of
either kind order the same way as the 40% warning and each other.

Each alert fires once per crossing and is armed again when a funding lifts the
pool back above it (or the cycle resets), by the rules of `balance_low`: the
fired alerts are kept as a set of keys on the package, decided in the same
pure step and written in the same transaction.

Auto-recharge (`below`, `amount`, `max_per_cycle`) asks the payments system
for a top-up when a deduction leaves `available` under `below`. The guards are
what stops runaway charges whatever the traffic: at most one open request
(the next waits until a top-up with its reference closes it or it expires
after `TOP_UP_REQUEST_OPEN_FOR`), and at most `max_per_cycle` requests per
cycle. The payment reference is derived from the package, the cycle and the
request's number in it, so a decision retried after a rollback makes the same
reference and the reference is unique per company without a lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from wabapool.domain import thresholds
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.limits import AMOUNT_MAX_MINOR

# SPEC section 4: "up to 5" alerts per company; more would be noise, not warning.
MAX_ALERTS = 5
# SPEC section 4: at most this many auto-recharge requests per cycle unless the company says otherwise.
DEFAULT_MAX_REQUESTS_PER_CYCLE = 3
# A company may allow more requests per cycle, but not unboundedly many: a daily charge at most.
MAX_REQUESTS_PER_CYCLE_LIMIT = 31
# SPEC section 4: an open request is reported expired after 24 h; the next crossing may raise a new one.
TOP_UP_REQUEST_OPEN_FOR = timedelta(hours=24)


class AlertKind(StrEnum):
    PERCENT = "percent"
    AMOUNT = "amount"


@dataclass(frozen=True, slots=True)
class BalanceAlert:
    """One alert: `percent` (1..100, of the funded base) or `amount` (minor units of prepaid money left)."""

    kind: AlertKind
    value: int

    @property
    def key(self) -> str:
        """The alert's identity in the fired set: `percent:20`, `amount:50000`."""
        return f"{self.kind.value}:{self.value}"

    def bound(self, funded_base_minor: int) -> int:
        """The most prepaid money left that is still at or under this alert."""
        if self.kind is AlertKind.AMOUNT:
            return self.value
        return thresholds.low_bound(funded_base_minor=funded_base_minor, threshold_percent=Decimal(self.value))

    def as_dict(self) -> dict[str, str | int]:
        return {"kind": self.kind.value, "value": self.value}


@dataclass(frozen=True, slots=True)
class AutoRecharge:
    """Ask for a top-up of `amount_minor` when `available` falls under `below_minor`."""

    below_minor: int
    amount_minor: int
    max_per_cycle: int = DEFAULT_MAX_REQUESTS_PER_CYCLE

    def as_dict(self) -> dict[str, int]:
        return {"below": self.below_minor, "amount": self.amount_minor, "max_per_cycle": self.max_per_cycle}


@dataclass(frozen=True, slots=True)
class TopUpRequest:
    """An open auto-recharge request: the top-up with `payment_reference` closes it."""

    payment_reference: str
    amount_minor: int
    requested_at: datetime

    @property
    def expires_at(self) -> datetime:
        return self.requested_at + TOP_UP_REQUEST_OPEN_FOR

    def is_expired(self, at: datetime) -> bool:
        return at >= self.expires_at


@dataclass(frozen=True, slots=True)
class Alerting:
    """The company's settings the warnings read: its alerts, its auto-recharge, and the currency they are in."""

    alerts: tuple[BalanceAlert, ...] = ()
    auto_recharge: AutoRecharge | None = None
    currency: str = ""

    @property
    def is_quiet(self) -> bool:
        """Nothing to watch: the deduction loop skips the checks."""
        return not self.alerts and self.auto_recharge is None


NO_ALERTING = Alerting()


def _invalid(message: str, field_name: str, **details: object) -> BillingError:
    return BillingError(Rejection.INVALID_REQUEST, message, {"field": field_name, **details})


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_alerts(raw: object, *, field_name: str = "alerts") -> tuple[BalanceAlert, ...]:
    """Alerts from plain data (a request, the stored JSON); raises `invalid_request` naming the bad field."""
    if not isinstance(raw, list | tuple):
        raise _invalid("alerts must be a list", field_name)
    if len(raw) > MAX_ALERTS:
        raise _invalid(f"at most {MAX_ALERTS} alerts", field_name, max_items=MAX_ALERTS)
    alerts: list[BalanceAlert] = []
    for index, item in enumerate(raw):
        where = f"{field_name}[{index}]"
        if not isinstance(item, dict) or set(item) != {"kind", "value"}:
            raise _invalid("an alert is {kind, value}", where)
        kind, value = item["kind"], item["value"]
        if kind not in {k.value for k in AlertKind}:
            raise _invalid("kind is percent or amount", f"{where}.kind")
        if not _whole(value):
            raise _invalid("value is a whole number", f"{where}.value")
        if kind == AlertKind.PERCENT and not 1 <= value <= 100:
            raise _invalid("a percent alert's value is 1..100", f"{where}.value")
        if kind == AlertKind.AMOUNT and not 1 <= value <= AMOUNT_MAX_MINOR:
            raise _invalid(f"an amount alert's value is 1..{AMOUNT_MAX_MINOR} minor units", f"{where}.value")
        alert = BalanceAlert(AlertKind(kind), value)
        if alert in alerts:
            raise _invalid("the same alert twice", where)
        alerts.append(alert)
    return tuple(alerts)


def parse_auto_recharge(raw: object, *, field_name: str = "auto_recharge") -> AutoRecharge | None:
    """`{below, amount, max_per_cycle?}` or None; raises `invalid_request` naming the bad field."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not {"below", "amount"} <= set(raw) <= {"below", "amount", "max_per_cycle"}:
        raise _invalid("auto_recharge is {below, amount, max_per_cycle?} or null", field_name)
    below, amount = raw["below"], raw["amount"]
    max_per_cycle = raw.get("max_per_cycle", DEFAULT_MAX_REQUESTS_PER_CYCLE)
    for name, value, lowest in (("below", below, 1), ("amount", amount, 1)):
        if not _whole(value) or not lowest <= value <= AMOUNT_MAX_MINOR:
            raise _invalid(f"{name} is a whole number of minor units, 1..{AMOUNT_MAX_MINOR}", f"{field_name}.{name}")
    if not _whole(max_per_cycle) or not 1 <= max_per_cycle <= MAX_REQUESTS_PER_CYCLE_LIMIT:
        raise _invalid(f"max_per_cycle is 1..{MAX_REQUESTS_PER_CYCLE_LIMIT}", f"{field_name}.max_per_cycle")
    return AutoRecharge(below, amount, max_per_cycle)


def holding(alerts: Iterable[BalanceAlert], *, spendable_minor: int, funded_base_minor: int) -> frozenset[str]:
    """Keys of the alerts the pool is at or under now."""
    return frozenset(a.key for a in alerts if spendable_minor <= a.bound(funded_base_minor))


def rearmed(
    alerts: Sequence[BalanceAlert], fired: frozenset[str], *, spendable_minor: int, funded_base_minor: int
) -> frozenset[str]:
    """After a funding: a fired alert the pool is now above is armed again (and keys of removed alerts dropped)."""
    if not fired:
        return fired
    return fired & holding(alerts, spendable_minor=spendable_minor, funded_base_minor=funded_base_minor)


def request_reference(scope: str, cycle_label: str, number: int) -> str:
    """The payment reference of the cycle's `number`-th request of a package: unique per company, reproducible."""
    return f"auto-recharge:{scope}:{cycle_label}:{number}"


@dataclass(slots=True)
class Watch:
    """The alerts and the auto-recharge over a run of deductions (the pool's funded base does not move in one).

    Built once per run; `after` is called with each deduction's new buckets'
    figures and says what fired. Mutable, but local to one pure call.
    """

    alerting: Alerting
    funded_base_minor: int
    fired: frozenset[str]
    request: TopUpRequest | None
    requested_in_cycle: int
    armed: list[tuple[BalanceAlert, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.armed = [(a, a.bound(self.funded_base_minor)) for a in self.alerting.alerts if a.key not in self.fired]

    def crossed(self, spendable_minor: int) -> list[BalanceAlert]:
        """The armed alerts this spendable figure is at or under (now fired)."""
        if not self.armed:
            return []
        now = [alert for alert, bound in self.armed if spendable_minor <= bound]
        if now:
            self.fired = self.fired | {a.key for a in now}
            self.armed = [(a, b) for a, b in self.armed if a.key not in self.fired]
        return now

    def recharge(
        self, available_minor: int, *, scope: str, cycle_label: str, at: datetime | None
    ) -> TopUpRequest | None:
        """A new request when `available` is under `below`, none is open and the cycle's limit allows one."""
        setting = self.alerting.auto_recharge
        if setting is None or self.request is not None or available_minor >= setting.below_minor:
            return None
        if self.requested_in_cycle >= setting.max_per_cycle:
            return None
        if at is None:
            raise ValueError("an auto-recharge request needs the time of the change")
        self.requested_in_cycle += 1
        self.request = TopUpRequest(
            request_reference(scope, cycle_label, self.requested_in_cycle), setting.amount_minor, at
        )
        return self.request
