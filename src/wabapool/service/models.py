"""Requests and results of the use cases, and the checks a request passes before any I/O.

The results made once per deduction (allocation, result, batch outcome) are
NamedTuples: as immutable as a frozen dataclass and under half its cost to build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Literal, NamedTuple

from wabapool.domain import limits
from wabapool.domain.alerts import AutoRecharge, BalanceAlert, TopUpRequest
from wabapool.domain.caps import SpendCap
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.forecast import DEFAULT_WARNING_DAYS as DEFAULT_FORECAST_WARNING_DAYS
from wabapool.domain.pool import Portion


@dataclass(frozen=True, slots=True)
class DeductionRequest:
    company_id: int
    billing_code: str
    deduction_code: str
    unique_code: str
    quantity: int
    waba_id: str
    broadcast_id: str | None = None
    message_id: str | None = None
    category: str | None = None
    customer_name: str | None = None
    phone_number: str | None = None

    def payload_bytes(self) -> bytes:
        """Everything but the key, canonically: equal → replay, different → conflict (hashed with a key)."""
        fields = (
            self.company_id,
            self.billing_code,
            self.deduction_code,
            self.quantity,
            self.waba_id,
            self.broadcast_id,
            self.message_id,
            self.category,
            self.customer_name,
            self.phone_number,
        )
        return json.dumps(fields).encode()


class Allocation(NamedTuple):
    credited_to: str
    quota_type: str
    amount: int

    @classmethod
    def of(cls, portion: Portion) -> Allocation:
        return cls(portion.credited_to, portion.quota_type.value, portion.amount_minor)


def allocation_json(allocations: tuple[Allocation, ...]) -> list[dict[str, object]]:
    """Allocations as stored in a request row's JSON column."""
    return [{"credited_to": a.credited_to, "quota_type": a.quota_type, "amount": a.amount} for a in allocations]


class DeductionResult(NamedTuple):
    deduction_id: int
    unique_code: str
    amount: int
    value_before: int
    value_after: int
    credited_to: str | None
    allocations: tuple[Allocation, ...]
    replayed: bool = False


class BatchItemResult(NamedTuple):
    unique_code: str
    status: Literal["applied", "replayed", "rejected"]
    result: DeductionResult | None = None
    error: BillingError | None = None

    def unwrap(self) -> DeductionResult:
        """The result, or the rejection raised."""
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise RuntimeError(f"outcome of {self.unique_code!r} has neither a result nor an error")
        return self.result


@dataclass(frozen=True, slots=True)
class RefundRequest:
    company_id: int
    unique_code: str
    refund_code: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RefundResult:
    refund_id: int
    unique_code: str
    refund_code: str
    amount: int
    value_before: int
    value_after: int
    allocations: tuple[Allocation, ...]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class FundingResult:
    payment_id: int
    payment_reference: str
    amount: int
    value_before: int
    value_after: int
    allocations: tuple[Allocation, ...]
    replayed: bool = False


class Keep(Enum):
    """A provisioning field that was not given: it keeps its current value (its default on creation)."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class PackageTerms:
    """A package's terms; `None` (or KEEP for the nullable threshold) keeps the current value."""

    allowance: int | None = None
    postpaid_limit: int | None = None
    cycle_anchor_day: int | None = None
    # None is "the default threshold" (40 %), KEEP is "not given".
    threshold_percent: Decimal | None | Keep = KEEP


@dataclass(frozen=True, slots=True)
class CompanyTerms:
    """A company's terms; `None` keeps the current value, or takes the default on creation."""

    billing_version: Literal["v2", "v3"] | None = None
    currency: str | None = None
    timezone: str | None = None
    package: PackageTerms | None = None
    # The company's override of the flag: True / False, None back to the global default, KEEP not given.
    waba_save_organization_id: bool | None | Keep = KEEP
    # The company's own alerts, auto-recharge and forecast warning days, as given (checked by domain.alerts).
    balance_alerts: object | Keep = KEEP
    auto_recharge: object | Keep = KEEP
    forecast_warning_days: object | Keep = KEEP


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """The company's own alerts, auto-recharge and forecast warning days (SPEC sections 4 and 5)."""

    alerts: tuple[BalanceAlert, ...] = ()
    auto_recharge: AutoRecharge | None = None
    forecast_warning_days: int = DEFAULT_FORECAST_WARNING_DAYS

    def as_dict(self) -> dict[str, object]:
        return {
            "alerts": [alert.as_dict() for alert in self.alerts],
            "auto_recharge": None if self.auto_recharge is None else self.auto_recharge.as_dict(),
            "forecast_warning_days": self.forecast_warning_days,
        }


# What a company gets for a term it was created without.
DEFAULT_BILLING_VERSION: Literal["v3"] = "v3"
DEFAULT_CURRENCY = "IDR"
DEFAULT_TIMEZONE = "Asia/Jakarta"


@dataclass(frozen=True, slots=True)
class ProvisionedCompany:
    """A company's terms as they stand after provisioning."""

    company_id: int
    billing_version: str
    currency: str
    timezone: str
    package: PackageTerms | None
    waba_save_organization_id: bool | None = None
    settings: AlertSettings = AlertSettings()


@dataclass(frozen=True, slots=True)
class ProvisionedWaba:
    """A WABA after provisioning: its own package's terms, or None when it spends from the company's pool."""

    company_id: int
    waba_id: str
    name: str
    package: PackageTerms | None
    spend_cap: SpendCap | None = None


@dataclass(frozen=True, slots=True)
class WabaCap:
    """A WABA's spending cap after a change (None: none) and its capped spend this cycle (None without a cap)."""

    waba_id: str
    spend_cap: SpendCap | None
    cap_spent: int | None


@dataclass(frozen=True, slots=True)
class PackageFigures:
    """One package's balance (a v2 WABA's own), in the shape of the pool's."""

    total: int
    available: int
    allowance: int
    initial_remaining: int
    additional_remaining: int
    postpaid_limit: int
    postpaid_used: int
    cycle_ends_at: datetime


@dataclass(frozen=True, slots=True)
class WabaSpend:
    waba_id: str
    name: str
    spent_this_cycle: int
    # The WABA's own package (v2, or the flag off); None when it spends from the company's pool.
    balance: PackageFigures | None = None
    package_id: int | None = None  # the package it charges (what the view is built from; not shown)
    spend_cap: SpendCap | None = None
    cap_spent: int | None = None  # the capped spend this cycle; None without a cap


@dataclass(frozen=True, slots=True)
class BalanceView:
    company_id: int
    billing_version: str
    currency: str
    total: int
    available: int
    allowance: int
    initial_remaining: int
    additional_remaining: int
    postpaid_limit: int
    postpaid_used: int
    threshold_percent: Decimal
    low_balance: bool
    below_zero: bool
    cycle_starts_at: datetime
    cycle_ends_at: datetime
    wabas: tuple[WabaSpend, ...] = field(default_factory=tuple)
    as_of: datetime | None = None
    timezone: str | None = None  # the company's IANA zone, for showing times
    funded_this_cycle: int | None = None  # the low-balance threshold's base (allowance + carried + top-ups)
    version: int | None = None  # the pool's version these figures are of: orders them in the balance cache
    # The open auto-recharge request (the pool's, or the first WABA package's with one), None when none is open.
    top_up_request: TopUpRequest | None = None
    top_up_request_waba_id: str | None = None


def _invalid(message: str, **details: object) -> BillingError:
    return BillingError(Rejection.INVALID_REQUEST, message, dict(details))


def check_code(name: str, value: object, *, max_length: int = limits.CODE_MAX_LENGTH) -> BillingError | None:
    if not isinstance(value, str) or not value.strip():
        return _invalid(f"{name} must be a non-empty string", field=name)
    if len(value) > max_length:
        return _invalid(f"{name} is longer than {max_length} characters", field=name, max_length=max_length)
    if "\x00" in value:  # PostgreSQL text cannot hold NUL: refuse it here, not with a driver error
        return _invalid(f"{name} must not contain NUL characters", field=name)
    return None


def too_large(name: str) -> BillingError:
    return BillingError(
        Rejection.AMOUNT_TOO_LARGE,
        f"{name} is past the ceiling on money, {limits.AMOUNT_MAX_MINOR} minor units",
        {"field": name, "max_minor": limits.AMOUNT_MAX_MINOR},
    )


def check_amount(name: str, value: object, *, minimum: int = 1) -> BillingError | None:
    """An integer amount in minor units from `minimum` up to the ceiling on money."""
    if isinstance(value, bool) or not isinstance(value, int):
        return _invalid(f"{name} must be an integer in minor units", field=name)
    if value < minimum:
        return _invalid(f"{name} must be at least {minimum}", field=name)
    if value > limits.AMOUNT_MAX_MINOR:
        return too_large(name)
    return None


def check_deduction(request: DeductionRequest) -> BillingError | None:
    """The first thing wrong with a deduction's shape, or None."""
    quantity = request.quantity
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 < quantity <= limits.QUANTITY_MAX:
        return _invalid(f"quantity must be an integer from 1 to {limits.QUANTITY_MAX}", field="quantity")
    return (
        check_code("unique_code", request.unique_code, max_length=limits.UNIQUE_CODE_MAX_LENGTH)
        or check_code("billing_code", request.billing_code)
        or check_code("deduction_code", request.deduction_code)
        or check_code("waba_id", request.waba_id, max_length=32)
    )
