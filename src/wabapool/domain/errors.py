"""Rejection codes, in the order a request is checked (first failure wins).

A rejection is data: the engine returns it per item and the API maps it to an
HTTP status in one place. A replay of an identical request is not an error.
"""

from __future__ import annotations

from enum import StrEnum


class Rejection(StrEnum):
    """Why a request was refused; checked in this order."""

    INVALID_REQUEST = "invalid_request"
    # An amount, or the bucket it would make, past the ceiling on money (limits.AMOUNT_MAX_MINOR).
    AMOUNT_TOO_LARGE = "amount_too_large"
    UNKNOWN_COMPANY = "unknown_company"
    NOT_SHARED_POOL = "not_shared_pool"
    UNKNOWN_WABA = "unknown_waba"
    UNKNOWN_DEDUCTION_CODE = "unknown_deduction_code"
    UNKNOWN_DEDUCTION = "unknown_deduction"
    # Provisioning: a WABA id is Meta's global id, and terms that money depends on are fixed.
    WABA_OWNED_ELSEWHERE = "waba_owned_elsewhere"
    CURRENCY_LOCKED = "currency_locked"
    BILLING_VERSION_LOCKED = "billing_version_locked"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    ALREADY_REFUNDED = "already_refunded"
    SETTLEMENT_EXCEEDS_USED = "settlement_exceeds_used"
    # The WABA's spending cap for this cycle (domain.caps): checked before the pool, so a capped WABA is told
    # that its own budget is spent, which no top-up of the pool would change.
    WABA_CAP_EXCEEDED = "waba_cap_exceeded"
    QUOTA_EXCEEDED = "quota_exceeded"
    # Not the request's fault: a concurrent request took the same unique key first; nothing was written.
    CONFLICT = "conflict"
    # Not the request's fault: the store failed before commit; nothing was written and a retry is safe.
    UNAVAILABLE = "unavailable"
    # Too many deductions queued for the pool; nothing was written, retry after the Retry-After.
    OVERLOADED = "overloaded"
    # The company (or the server) runs as many CSV exports as it may at once; retry after the Retry-After.
    TOO_MANY_EXPORTS = "too_many_exports"
    # The commit failed or was interrupted: the request may or may not have applied. Only a retry
    # with the same idempotency key (unique_code) can tell; it answers the original result if it did.
    OUTCOME_UNKNOWN = "outcome_unknown"


class BillingError(Exception):
    """A request the engine refused; nothing was written (but for OUTCOME_UNKNOWN, which may have)."""

    def __init__(self, code: Rejection, message: str, details: dict[str, object] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    def __repr__(self) -> str:
        return f"BillingError({self.code.value!r}, {self.message!r})"
