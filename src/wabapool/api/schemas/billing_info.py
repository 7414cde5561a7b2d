"""The balance page's body: `billings/info` with its cycle, WABAs, forecast and open top-up request."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from wabapool.api.schemas.companies import SpendCapOut


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
