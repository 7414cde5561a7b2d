"""The public API's reports: the request log, usage, billing events, and the viewer's preferences."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, StrictBool

from wabapool.api.schemas.fields import Strict
from wabapool.api.schemas.money import AllocationOut


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
