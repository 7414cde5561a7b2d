"""Use cases: each one transaction, built from the pure domain and the storage layer."""

from wabapool.service.billing import BillingService
from wabapool.service.models import (
    Allocation,
    BalanceView,
    BatchItemResult,
    CompanyTerms,
    DeductionRequest,
    DeductionResult,
    FundingResult,
    PackageTerms,
    RefundRequest,
    RefundResult,
)

__all__ = [
    "Allocation",
    "BalanceView",
    "BatchItemResult",
    "BillingService",
    "CompanyTerms",
    "DeductionRequest",
    "DeductionResult",
    "FundingResult",
    "PackageTerms",
    "RefundRequest",
    "RefundResult",
]
