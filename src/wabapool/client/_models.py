"""What goes in and what comes back: frozen dataclasses, money as integer minor units."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from wabapool.client._exceptions import WabapoolError
from wabapool.domain.json_types import JSONValue

__all__ = [
    "Allocation",
    "Balance",
    "BatchItem",
    "BatchResult",
    "Deduction",
    "DeductionItem",
    "PackageTerms",
    "Payment",
    "Refund",
]

BatchStatus = Literal["applied", "replayed", "rejected"]


@dataclass(frozen=True, slots=True)
class DeductionItem:
    """One deduction to send; `unique_code` is its idempotency key."""

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


@dataclass(frozen=True, slots=True)
class PackageTerms:
    """The pool a v3 company gets: monthly allowance, postpaid line, cycle, low-balance threshold."""

    allowance: int
    postpaid_limit: int = 0
    cycle_anchor_day: int = 1
    # DECIMAL(5,2) on the service; None means the default (40).
    threshold_percent: Decimal | int | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    """The portion of an amount one bucket gave (or got back)."""

    credited_to: str
    quota_type: str
    amount: int


@dataclass(frozen=True, slots=True)
class Deduction:
    """An applied deduction; `replayed` when the service had applied it before."""

    deduction_id: int
    unique_code: str
    amount: int
    value_before: int
    value_after: int
    credited_to: str | None
    allocations: tuple[Allocation, ...]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class BatchItem:
    """The outcome of one item of a batch: a deduction, or the error that rejected it."""

    unique_code: str
    status: BatchStatus
    deduction: Deduction | None = None
    error: WabapoolError | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        """True when the item was applied now or before."""
        return self.status != "rejected"


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Every item's outcome, in request order."""

    results: tuple[BatchItem, ...]

    def __iter__(self) -> Iterator[BatchItem]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> BatchItem:
        return self.results[index]

    @property
    def rejected(self) -> tuple[BatchItem, ...]:
        """The items the service refused."""
        return tuple(item for item in self.results if item.status == "rejected")


@dataclass(frozen=True, slots=True)
class Refund:
    """An applied refund; `replayed` when the service had applied it before."""

    refund_id: int
    unique_code: str
    refund_code: str
    amount: int
    value_before: int
    value_after: int
    allocations: tuple[Allocation, ...]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Payment:
    """An applied top-up or postpaid settlement; `replayed` when seen before."""

    payment_id: int
    payment_reference: str
    amount: int
    value_before: int
    value_after: int
    allocations: tuple[Allocation, ...]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Balance:
    """The authoritative pool figures; `raw` keeps the whole answer."""

    company_id: int
    total: int
    available: int
    allowance: int
    initial_remaining: int
    additional_remaining: int
    postpaid_limit: int
    postpaid_used: int
    raw: Mapping[str, JSONValue] = field(default_factory=dict, repr=False, compare=False)
