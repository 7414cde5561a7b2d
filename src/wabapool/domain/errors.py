"""Rejection codes, in the order a request is checked (first failure wins).

A rejection is data: the engine returns it per item and the API maps it to an
HTTP status in one place. A replay of an identical request is not an error.
"""

from __future__ import annotations

from enum import StrEnum


class Rejection(StrEnum):
    """Why a request was refused; checked in this order."""

    INVALID_REQUEST = "invalid_request"
    UNKNOWN_COMPANY = "unknown_company"
    NOT_SHARED_POOL = "not_shared_pool"
    UNKNOWN_WABA = "unknown_waba"
    UNKNOWN_DEDUCTION_CODE = "unknown_deduction_code"
    UNKNOWN_DEDUCTION = "unknown_deduction"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    ALREADY_REFUNDED = "already_refunded"
    QUOTA_EXCEEDED = "quota_exceeded"
    # Not the request's fault: the store failed; nothing was written and a retry is safe.
    UNAVAILABLE = "unavailable"


class BillingError(Exception):
    """A request the engine refused; nothing was written."""

    def __init__(self, code: Rejection, message: str, details: dict[str, object] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    def __repr__(self) -> str:
        return f"BillingError({self.code.value!r}, {self.message!r})"
