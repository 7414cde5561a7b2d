"""Deductions, batches, refunds and payments: what moves money, in and out of the API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from wabapool.api.schemas.envelope import ErrorBody
from wabapool.api.schemas.fields import AmountMinor, Code, CompanyId, Identifier, Key, NoNul, ShortText, Strict, WabaId
from wabapool.domain import limits


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
