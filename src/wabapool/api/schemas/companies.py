"""Companies, their packages, WABAs, spending caps, alerts, prices and webhooks (the internal API's setup)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt, StringConstraints

from wabapool.api.schemas.fields import CapCategory, CompanyId, NonNegativeMinor, NoNul, Strict, Threshold, Timestamp


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
