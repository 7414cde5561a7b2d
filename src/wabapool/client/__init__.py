"""The wabapool client SDK: the internal (service-to-service) API over httpx.

    with WabapoolClient("https://billing.internal", api_key) as client:
        deduction = client.deduct(42, "wa_broadcast", "wa_marketing_id", "wamid.1", 1, "1029384756")

A call returns a frozen result (`replayed=True` when the service had applied
it before) or raises one `WabapoolError` subclass (the tree is drawn in
`wabapool.client._exceptions`). Retries are bounded and resend the identical
body, so the idempotency key makes them safe. Money is an int in minor units.
Wrong argument types (a float amount, an empty batch) raise TypeError or
ValueError before anything is sent.
"""

from wabapool.client._async_client import AsyncWabapoolClient
from wabapool.client._client import WabapoolClient
from wabapool.client._exceptions import (
    AlreadyRefunded,
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InvalidResponse,
    NotFound,
    NotSharedPool,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    UnknownDeductionCode,
    ValidationError,
    WabaCapExceeded,
    WabapoolError,
)
from wabapool.client._models import (
    Allocation,
    Balance,
    BatchItem,
    BatchResult,
    Deduction,
    DeductionItem,
    PackageTerms,
    Payment,
    Refund,
)

__all__ = [
    "AlreadyRefunded",
    "Allocation",
    "AsyncWabapoolClient",
    "Balance",
    "BatchItem",
    "BatchResult",
    "Conflict",
    "Deduction",
    "DeductionItem",
    "Forbidden",
    "IdempotencyConflict",
    "InvalidResponse",
    "NotFound",
    "NotSharedPool",
    "PackageTerms",
    "PayloadTooLarge",
    "Payment",
    "QuotaExceeded",
    "WabaCapExceeded",
    "RateLimited",
    "Refund",
    "ServiceUnavailable",
    "TransportError",
    "Unauthorized",
    "UnknownDeductionCode",
    "ValidationError",
    "WabapoolClient",
    "WabapoolError",
]
