"""Wire models: what goes over HTTP. Money is an integer in minor units, never a float."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from wabapool.domain import limits
from wabapool.domain.identifiers import identifier_problem


def _no_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL; refuse it as bad input instead of failing in the driver."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _utc_representable(value: datetime) -> datetime:
    """An aware time whose UTC form leaves the calendar (year 1 with +05:00) cannot be stored or compared."""
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("is out of range once converted to UTC") from exc
    return value


def _identifier(value: str) -> str:
    """An id other systems generate: no formula-leading character, no separator or control character."""
    problem = identifier_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


NoNul = AfterValidator(_no_nul)
Identifier = AfterValidator(_identifier)
Timestamp = Annotated[datetime, AfterValidator(_utc_representable)]
# The ceiling on money is the service's check (400 `amount_too_large`, not a validation error); the
# document still states it.
_CEILING = {"maximum": limits.AMOUNT_MAX_MINOR}
AmountMinor = Annotated[
    StrictInt, Field(gt=0, description="Minor units (integer), at most 2^53 - 1.", json_schema_extra=_CEILING)
]
NonNegativeMinor = Annotated[StrictInt, Field(ge=0, json_schema_extra=_CEILING)]
Code = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=limits.CODE_MAX_LENGTH), Identifier
]
Key = Annotated[str, StringConstraints(min_length=1, max_length=limits.UNIQUE_CODE_MAX_LENGTH), Identifier]
CompanyId = Annotated[StrictInt, Field(gt=0, le=2**63 - 1)]
# Meta's WABA ids are digits; letters, `_` and `-` are kept for other systems' ids, never `-` first.
WABA_ID_PATTERN = r"^[0-9A-Za-z_][0-9A-Za-z_-]*$"
WabaId = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=WABA_ID_PATTERN)]
ShortText = Annotated[str, StringConstraints(max_length=200), NoNul]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, object] = Field(default_factory=dict)


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class ExtraAttrs(BaseModel):
    """Message detail; unknown keys are tolerated (the pipeline sends more than we keep)."""

    model_config = ConfigDict(extra="ignore")
    waba_id: WabaId
    broadcast_id: Annotated[str, StringConstraints(max_length=64), NoNul, Identifier] | None = None
    message_id: Annotated[str, StringConstraints(max_length=128), NoNul, Identifier] | None = None
    category: Annotated[str, StringConstraints(max_length=48), NoNul, Identifier] | None = None
    customer_name: ShortText | None = None
    phone_number: Annotated[str, StringConstraints(max_length=32), NoNul] | None = None


class DeductionIn(Strict):
    company_id: CompanyId
    billing_code: Code
    deduction_code: Code
    unique_code: Key
    quantity: Annotated[StrictInt, Field(gt=0, le=limits.QUANTITY_MAX)]
    extra_attrs: ExtraAttrs


class AllocationOut(BaseModel):
    credited_to: str
    quota_type: Literal["initial", "additional", "postpaid"]
    amount: int


class DeductionOut(BaseModel):
    deduction_id: int
    unique_code: str
    amount: int
    value_before: int
    value_after: int
    credited_to: str | None
    allocations: list[AllocationOut]
    replayed: bool


class BatchIn(Strict):
    items: list[DeductionIn] = Field(description=f"At most {limits.BATCH_MAX_ITEMS} items (413 past that).")


class BatchItemOut(BaseModel):
    unique_code: str
    status: Literal["applied", "replayed", "rejected"]
    error: ErrorBody | None = None
    deduction_id: int | None = None
    amount: int | None = None
    value_before: int | None = None
    value_after: int | None = None
    credited_to: str | None = None
    allocations: list[AllocationOut] | None = None
    replayed: bool | None = None


class BatchOut(BaseModel):
    results: list[BatchItemOut]


class RefundIn(Strict):
    company_id: CompanyId
    unique_code: Key
    refund_code: Key
    reason: ShortText | None = None


class RefundOut(BaseModel):
    refund_id: int
    unique_code: str
    refund_code: str
    amount: int
    value_before: int
    value_after: int
    allocations: list[AllocationOut]
    replayed: bool


class PaymentIn(Strict):
    company_id: CompanyId
    amount: AmountMinor
    payment_reference: Key
    # Which package the payment is for: required for a v2 company (one package per WABA), else the pool.
    waba_id: WabaId | None = None


class PaymentOut(BaseModel):
    payment_id: int
    payment_reference: str
    amount: int
    value_before: int
    value_after: int
    allocations: list[AllocationOut]
    replayed: bool


Threshold = Annotated[Decimal, Field(ge=0, le=100, max_digits=5, decimal_places=2)]


class PackageIn(Strict):
    """A field left out keeps its current value (on creation: allowance 0, limit 0, anchor day 1, threshold 40)."""

    allowance: NonNegativeMinor | None = None
    postpaid_limit: NonNegativeMinor | None = None
    cycle_anchor_day: Annotated[StrictInt, Field(ge=1, le=31)] | None = None
    # null: the default threshold (40 %); left out: kept.
    threshold_percent: Threshold | None = None


class AlertIn(Strict):
    kind: Literal["percent", "amount"] = Field(description="percent of the cycle's funded base, or an amount left.")
    value: StrictInt = Field(description="1..100 for percent; minor units of prepaid money left for amount.")


class AutoRechargeIn(Strict):
    below: StrictInt = Field(description="Minor units: a deduction leaving `available` under this asks for a top-up.")
    amount: StrictInt = Field(description="Minor units the requested top-up is for.")
    max_per_cycle: StrictInt = Field(default=3, description="Requests per cycle at most (1..31).")


class AlertOut(BaseModel):
    kind: str
    value: int


class AutoRechargeOut(BaseModel):
    below: int
    amount: int
    max_per_cycle: int


class BalanceAlertsIn(Strict):
    """A field left out keeps its value; `auto_recharge: null` turns it off."""

    alerts: list[AlertIn] | None = Field(default=None, max_length=5)
    auto_recharge: AutoRechargeIn | None = None
    forecast_warning_days: StrictInt | None = None


class BalanceAlertsOut(BaseModel):
    alerts: list[AlertOut]
    auto_recharge: AutoRechargeOut | None
    forecast_warning_days: int
    editable: bool = Field(default=False, description="Whether the caller's role may change them (owner, admin).")


class CompanyIn(Strict):
    """A field left out keeps its current value (on creation: v3, IDR, Asia/Jakarta)."""

    billing_version: Literal["v2", "v3"] | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    package: PackageIn | None = None
    # The company's override of the feature flag (true: new WABAs join the pool); null: the global default.
    waba_save_organization_id: StrictBool | None = None
    # The company's own alerts (at most 5), auto-recharge (null: off) and forecast warning days (SPEC section 4).
    balance_alerts: list[AlertIn] | None = Field(default=None, max_length=5)
    auto_recharge: AutoRechargeIn | None = None
    forecast_warning_days: StrictInt | None = None


class PackageOut(BaseModel):
    allowance: int
    postpaid_limit: int
    cycle_anchor_day: int
    threshold_percent: Decimal | None


class CompanyOut(BaseModel):
    company_id: int
    billing_version: str
    currency: str
    timezone: str
    package: PackageOut | None
    waba_save_organization_id: bool | None
    balance_alerts: list[AlertOut]
    auto_recharge: AutoRechargeOut | None
    forecast_warning_days: int


CapCategory = Literal["marketing", "utility", "authentication", "authentication_international", "service"]


class SpendCapIn(Strict):
    """A WABA's spending cap per billing cycle (rule 3.11)."""

    amount: NonNegativeMinor = Field(description="Minor units per cycle; 0 stops all capped spend.")
    categories: list[CapCategory] | None = Field(
        default=None, min_length=1, description="The message categories it covers; absent or null: every category."
    )
    warn_percent: Annotated[StrictInt, Field(ge=1, le=100)] | None = Field(
        default=None, description="waba_cap_warning when the capped spend reaches this share of the cap (80)."
    )


class SpendCapOut(BaseModel):
    amount: int
    categories: list[str] | None
    warn_percent: int


class WabaIn(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    # The WABA's own package (v2, or a v3 company with waba_save_organization_id off); a field left out is kept.
    package: PackageIn | None = None
    spend_cap: SpendCapIn | None = Field(
        default=None, description="The WABA's spending cap; null removes it, left out keeps it."
    )


class WabaOut(BaseModel):
    company_id: int
    waba_id: str
    name: str
    # The WABA's own package's terms; null when it spends from the company's shared pool.
    package: PackageOut | None
    spend_cap: SpendCapOut | None = None


class WabaCapOut(BaseModel):
    """A WABA's cap after a change, and what it has spent against it this cycle (null without a cap)."""

    waba_id: str
    spend_cap: SpendCapOut | None
    cap_spent: int | None


class PriceIn(Strict):
    unit_price: NonNegativeMinor
    company_id: CompanyId | None = None
    market: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,4}$")] | None = None
    effective_from: Timestamp | None = None


class PriceOut(BaseModel):
    deduction_code: str
    unit_price: int
    company_id: int | None
    market: str | None
    effective_from: datetime


class WebhookIn(Strict):
    url: Annotated[str, StringConstraints(min_length=8, max_length=2048, pattern=r"^https?://"), NoNul]
    secret: Annotated[
        str | None,
        StringConstraints(min_length=16, max_length=256),
        Field(description="A Standard Webhooks secret, `whsec_` + base64 of 24-64 bytes; generated when absent."),
    ] = None


class WebhookOut(BaseModel):
    company_id: int
    url: str
    secret: str | None = Field(None, description="The generated secret, returned only when the request had none.")


class InvalidatedOut(BaseModel):
    company_id: int
    invalidated: bool


class WabiOut(BaseModel):
    allowance: int
    remaining: int
    resets_at: datetime


class RemainingOut(BaseModel):
    remaining: int


class PostpaidOut(BaseModel):
    limit: int
    used: int


class BalanceOut(BaseModel):
    total: int
    available: int
    wabi: WabiOut
    additional: RemainingOut
    postpaid: PostpaidOut


class CycleOut(BaseModel):
    starts_at: datetime
    ends_at: datetime


class WabaUsageOut(BaseModel):
    waba_id: str
    name: str
    spent_this_cycle: int
    # Shown to owners, admins and supervisors only (left out for agents and members).
    spend_cap: SpendCapOut | None = Field(default=None, description="The WABA's spending cap; null: none.")
    cap_spent: int | None = Field(default=None, description="Capped spend this cycle; null without a cap.")
    daily_spend: int = Field(default=0, description="Mean daily spend of the forecast's basis days (minor units).")
    balance: BalanceOut | None = Field(default=None, description="The WABA's own package (v2), else absent.")


class ForecastOut(BaseModel):
    runs_out_at: datetime | None = Field(
        description="When `available` runs out at this pace; null when it lasts past the cycle's end "
        "or nothing was spent."
    )
    daily_spend: int = Field(description="Mean daily spend (minor units, rounded down) of the basis days.")
    basis_days: int = Field(description="Completed days in the company's timezone the pace is taken over (at most 7).")


class TopUpRequestOut(BaseModel):
    payment_reference: str
    amount: int
    requested_at: datetime
    expires_at: datetime
    waba_id: str | None = Field(default=None, description="The WABA whose own package it funds (v2); null: the pool.")


class BillingInfoOut(BaseModel):
    billing_version: str
    currency: str
    currency_exponent: int | None = Field(
        default=None, description="ISO 4217 minor unit of the currency: amounts are divided by 10**exponent."
    )
    balance: BalanceOut
    threshold_percent: Decimal
    low_balance: bool
    below_zero: bool
    cycle: CycleOut
    wabas: list[WabaUsageOut]
    as_of: datetime
    stale: bool
    timezone: str | None = Field(default=None, description="The company's IANA timezone (times on the page).")
    funded_this_cycle: int | None = Field(
        default=None, description="Funds of this cycle (allowance, carried credit, top-ups): the threshold's base."
    )
    forecast: ForecastOut | None = None
    top_up_request: TopUpRequestOut | None = Field(default=None, description="The open auto-recharge request.")


class LogRowOut(BaseModel):
    kind: Literal["deduction", "refund"] = Field(description="A refund is a row of its own, dated when it happened.")
    deduction_id: int = Field(description="The deduction; on a refund row, the deduction it returns.")
    refund_id: int | None = Field(description="Set on refund rows only.")
    created_at: datetime
    unique_code: str
    waba_id: str | None = Field(default=None, description="Only when the company preference show_waba_id is on.")
    waba_name: str | None = None
    broadcast_id: str | None
    message_id: str | None
    category: str | None
    deduction_code: str
    quantity: int
    unit_price: int
    amount: int = Field(description="quantity x unit_price; negative on a refund row (money back to the pool).")
    credited_to: str | None
    allocations: list[AllocationOut]
    balance_after: int = Field(description="The pool total after this row.")
    customer_name: str | None
    phone_number: str | None
    refunded: bool


class LogPageOut(BaseModel):
    data: list[LogRowOut]
    next_cursor: str | None


class WabaDayUsageOut(BaseModel):
    waba_id: str
    amount: int = Field(description="Minor units spent that day, refunds taken back (on the refund's day).")
    messages: int


class DayUsageOut(BaseModel):
    date: str = Field(description="The calendar day in the company timezone, YYYY-MM-DD.")
    amount: int
    messages: int
    by_waba: list[WabaDayUsageOut]


class UsageOut(BaseModel):
    currency: str
    days: list[DayUsageOut] = Field(description="Every day of the period, oldest first, empty days included.")


class DeliveryOut(BaseModel):
    state: Literal["pending", "delivered", "failed", "dead"] = Field(
        description="pending: not tried yet; failed: tried, another attempt is scheduled; "
        "dead: dead-lettered (no attempt left); delivered: a 2xx answer."
    )
    attempts: int
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None


class BillingEventOut(BaseModel):
    id: str = Field(description="The event id (the webhook-id header of its delivery).")
    type: str
    created_at: datetime
    data: dict[str, object] = Field(description="The pool figures of the event (total, available, ...).")
    delivery: DeliveryOut


class BillingEventPageOut(BaseModel):
    data: list[BillingEventOut]
    next_cursor: str | None


class PreferencesIn(Strict):
    show_waba_id: StrictBool


class PreferencesOut(BaseModel):
    show_waba_id: bool


class HealthOut(BaseModel):
    status: str
