"""Request dependencies: the app context, the internal caller, the token's principal.

All `async def`: a plain `def` dependency runs in a worker thread, which costs
more than the work itself on the deduction hot path.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from wabapool.api.context import AppContext
from wabapool.api.errors import ApiError
from wabapool.domain.rate import retry_after_header
from wabapool.security import AuthenticationError, Permission, Principal, Scope, allowed

api_key_header = APIKeyHeader(name="X-Api-Key", auto_error=False, description="Per-service internal API key.")
bearer = HTTPBearer(auto_error=False, description="JWT with company_id and role claims.")


async def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


Context = Annotated[AppContext, Depends(get_context)]


def scoped_caller(context: AppContext, key: str | None, scope: Scope) -> str:
    """The calling service's name if its key holds `scope`: 401 without a valid key, 403 without the scope."""
    caller = context.api_keys.caller(key)
    if caller is None:
        raise ApiError(401, "unauthorized", "a valid X-Api-Key is required")
    if not caller.may(scope):
        raise ApiError(403, "forbidden", f"this API key may not {scope.value}", {"scope": scope.value})
    return caller.service


def internal_caller(scope: Scope):  # type: ignore[no-untyped-def]
    """A dependency for one scope; only `X-Api-Key` is accepted here."""

    async def check(request: Request, context: Context, key: Annotated[str | None, Security(api_key_header)]) -> str:
        service = scoped_caller(context, key, scope)
        request.state.caller = service
        return service

    return check


Refunder = Annotated[str, Depends(internal_caller(Scope.REFUND))]
TopUpper = Annotated[str, Depends(internal_caller(Scope.TOP_UP))]
Settler = Annotated[str, Depends(internal_caller(Scope.SETTLE))]
Provisioner = Annotated[str, Depends(internal_caller(Scope.PROVISION))]
Reader = Annotated[str, Depends(internal_caller(Scope.READ))]


async def current_principal(
    request: Request, context: Context, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Principal:
    """The company and role come from the verified token, never from the request."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "unauthorized", "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    if context.tokens is None:
        raise ApiError(401, "unauthorized", "token verification is not configured")
    try:
        principal = context.tokens.verify(credentials.credentials)
    except AuthenticationError as exc:
        raise ApiError(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
    request.state.company_id = principal.company_id
    wait = await context.rate_limits.wait_seconds(principal.company_id, credentials.credentials)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            "too many requests for this company or token; retry after the Retry-After",
            {"retry_after_seconds": math.ceil(wait)},
            headers={"Retry-After": retry_after_header(wait)},
        )
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(permission: Permission):  # type: ignore[no-untyped-def]
    """A dependency that lets only roles the table allows through."""

    async def check(principal: CurrentPrincipal) -> Principal:
        if not allowed(principal.role, permission):
            raise ApiError(403, "forbidden", f"role {principal.role.value} may not do this")
        return principal

    return check
