"""What a call can raise, one class per error code of the service.

The service answers every refusal with one envelope,
`{"error": {"code", "message", "details"}}`; the client turns it into the
class registered for that code, or, for a code it does not know yet, the
class registered for the HTTP status. Failures below HTTP (timeouts,
refused connections) are translated once, here, into `TransportError`.

    WabapoolError                  code, message, details, status_code
    ├── ValidationError            400 validation_error, invalid_request (also unknown 400 / 422)
    ├── QuotaExceeded              400 quota_exceeded
    ├── WabaCapExceeded            400 waba_cap_exceeded
    ├── UnknownDeductionCode       400 unknown_deduction_code
    ├── Unauthorized               401
    ├── Forbidden                  403
    ├── NotFound                   404 not_found, unknown_company, unknown_waba, unknown_deduction
    ├── Conflict                   409 (a code this client does not know yet)
    │   ├── IdempotencyConflict    409 idempotency_conflict
    │   └── AlreadyRefunded        409 already_refunded
    ├── PayloadTooLarge            413
    ├── NotSharedPool              422 not_shared_pool
    ├── RateLimited                429 (after the retries)
    ├── ServiceUnavailable         5xx (502/503/504 after the retries)
    ├── InvalidResponse            a 2xx answer the client cannot read
    └── TransportError             no answer: timeouts / connection errors after the retries

`TransportError` and `InvalidResponse` mean the outcome is unknown: the
request may have been applied. Send it again later with the same
`unique_code` (or `refund_code`, `payment_reference`): the service replays
the original result instead of applying it twice.
"""

from __future__ import annotations

from collections.abc import Mapping

from wabapool.domain.json_types import JSONObject

__all__ = [
    "AlreadyRefunded",
    "Conflict",
    "Forbidden",
    "IdempotencyConflict",
    "InvalidResponse",
    "NotFound",
    "NotSharedPool",
    "PayloadTooLarge",
    "QuotaExceeded",
    "RateLimited",
    "ServiceUnavailable",
    "TransportError",
    "Unauthorized",
    "UnknownDeductionCode",
    "ValidationError",
    "WabaCapExceeded",
    "WabapoolError",
]


class WabapoolError(Exception):
    """A call that did not produce a result; `code` says why."""

    def __init__(
        self,
        code: str,
        message: str,
        details: Mapping[str, object] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: JSONObject = dict(details or {})
        self.status_code = status_code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, status_code={self.status_code!r})"


class ValidationError(WabapoolError):
    """The request is malformed or breaks a limit."""


class QuotaExceeded(WabapoolError):
    """The pool cannot pay the amount, even with the postpaid line; nothing was written."""


class WabaCapExceeded(WabapoolError):
    """The WABA's spending cap for this cycle would be passed (details: waba_id, cap, spent); nothing was written."""


class UnknownDeductionCode(WabapoolError):
    """No price is in force for the deduction code."""


class Unauthorized(WabapoolError):
    """The API key is missing or wrong."""


class Forbidden(WabapoolError):
    """The API key may not call this endpoint."""


class NotFound(WabapoolError):
    """The company, WABA or deduction does not exist (or is not the caller's to see)."""


class Conflict(WabapoolError):
    """The request contradicts one already applied."""


class IdempotencyConflict(Conflict):
    """The idempotency key was used before with a different payload."""


class AlreadyRefunded(Conflict):
    """The deduction was already refunded under another refund code."""


class PayloadTooLarge(WabapoolError):
    """The body is larger than the service accepts."""


class NotSharedPool(WabapoolError):
    """The company is not on the shared pool (billing version v3)."""


class RateLimited(WabapoolError):
    """The service asked us to slow down, and kept asking after every retry."""


class ServiceUnavailable(WabapoolError):
    """The service failed or was unavailable, after every retry it allowed."""


class InvalidResponse(WabapoolError):
    """A success answer whose body is not what the contract promises."""


class TransportError(WabapoolError):
    """No answer from the service (timeouts, connection errors), after every retry."""


_BY_CODE: dict[str, type[WabapoolError]] = {
    "validation_error": ValidationError,
    "invalid_request": ValidationError,
    "quota_exceeded": QuotaExceeded,
    "waba_cap_exceeded": WabaCapExceeded,
    "unknown_deduction_code": UnknownDeductionCode,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "unknown_company": NotFound,
    "unknown_waba": NotFound,
    "unknown_deduction": NotFound,
    "idempotency_conflict": IdempotencyConflict,
    "already_refunded": AlreadyRefunded,
    "payload_too_large": PayloadTooLarge,
    "not_shared_pool": NotSharedPool,
    "rate_limited": RateLimited,
    "service_unavailable": ServiceUnavailable,
    "unavailable": ServiceUnavailable,
    "unprocessable": ValidationError,
}

# For codes this client does not know (the service may add some): the status decides.
_BY_STATUS: dict[int, type[WabapoolError]] = {
    400: ValidationError,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationError,
    429: RateLimited,
}

# The code to report when an error answer carries no envelope (a proxy's page, a bare 502).
_CODE_BY_STATUS: dict[int, str] = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    429: "rate_limited",
}


def exception_class(code: str, status_code: int | None) -> type[WabapoolError]:
    """The class for an error code, falling back to its HTTP status."""
    if code in _BY_CODE:
        return _BY_CODE[code]
    if status_code is None:
        return WabapoolError
    if status_code >= 500:
        return ServiceUnavailable
    return _BY_STATUS.get(status_code, WabapoolError)


def default_code(status_code: int) -> str:
    """The code for an error answer that did not name one."""
    if status_code >= 500:
        return "service_unavailable"
    return _CODE_BY_STATUS.get(status_code, f"http_{status_code}")


def make_error(
    code: str, message: str, details: Mapping[str, object] | None = None, status_code: int | None = None
) -> WabapoolError:
    """Build the typed exception for one error envelope."""
    return exception_class(code, status_code)(code, message, details, status_code)
