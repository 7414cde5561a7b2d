"""The one error envelope, and the one place errors become HTTP statuses.

Only the product's errors are mapped here: `BillingError` (the service has already turned every storage
failure into one, see `wabapool.service.errors`), `ApiError` (auth, size), and the framework's own
validation and HTTP errors. Anything else is a bug: 500, logged, nothing half-written.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from wabapool.api.schemas.envelope import ErrorEnvelope
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.limits import RETRY_AFTER_SECONDS

log = structlog.get_logger("wabapool.api")

REJECTION_STATUS: dict[Rejection, int] = {
    Rejection.INVALID_REQUEST: 400,
    Rejection.AMOUNT_TOO_LARGE: 400,
    Rejection.SETTLEMENT_EXCEEDS_USED: 400,
    Rejection.QUOTA_EXCEEDED: 400,
    Rejection.WABA_CAP_EXCEEDED: 400,
    Rejection.UNKNOWN_DEDUCTION_CODE: 400,
    Rejection.UNKNOWN_COMPANY: 404,
    Rejection.UNKNOWN_WABA: 404,
    Rejection.UNKNOWN_DEDUCTION: 404,
    Rejection.IDEMPOTENCY_CONFLICT: 409,
    Rejection.WABA_OWNED_ELSEWHERE: 409,
    Rejection.CURRENCY_LOCKED: 409,
    Rejection.BILLING_VERSION_LOCKED: 409,
    Rejection.ALREADY_REFUNDED: 409,
    Rejection.CONFLICT: 409,
    Rejection.NOT_SHARED_POOL: 422,
    Rejection.UNAVAILABLE: 503,
    Rejection.OVERLOADED: 503,
    Rejection.OUTCOME_UNKNOWN: 503,
    Rejection.TOO_MANY_EXPORTS: 429,
}
RETRY_AFTER = {"Retry-After": str(RETRY_AFTER_SECONDS)}

HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    """An HTTP-level refusal (auth, size, availability) in the envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, object] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.headers = headers


def envelope(code: str, message: str, details: Mapping[str, object] | None = None) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "details": dict(details or {})}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, object] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(envelope(code, message, details), status_code=status, headers=headers)


def billing_error_body(error: BillingError) -> dict[str, object]:
    return {"code": error.code.value, "message": error.message, "details": _jsonable(error.details)}


def _jsonable(details: Mapping[str, object]) -> dict[str, object]:
    return {
        key: value if isinstance(value, (int, str, bool, type(None), list, dict)) else str(value)
        for key, value in details.items()
    }


def _validation_details(exc: RequestValidationError) -> dict[str, object]:
    problems = []
    for error in exc.errors()[:20]:
        location = ".".join(str(part) for part in error.get("loc", ()))
        problems.append({"field": location, "problem": error.get("msg", "invalid")})
    return {"errors": problems}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BillingError)
    async def _billing(_: Request, exc: BillingError) -> JSONResponse:
        status = REJECTION_STATUS[exc.code]
        headers = RETRY_AFTER if status == 503 else None
        if status == 429:
            headers = {"Retry-After": str(exc.details.get("retry_after_seconds", RETRY_AFTER_SECONDS))}
        return JSONResponse({"error": billing_error_body(exc)}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "validation_error", "the request is not valid", _validation_details(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error_type=type(exc).__name__)
        return error_response(500, "internal_error", "something went wrong; nothing was half-written")


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI entries for the envelope at each status a route can answer with."""
    return {status: {"model": ErrorEnvelope, "description": HTTP_CODES.get(status, "error")} for status in statuses}
