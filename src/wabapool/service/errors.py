"""Storage errors become the product's errors here, once, as they leave the service.

    storage.errors                      service (BillingError)        API (api/errors.py)
    StorageUnavailable, StorageTimeout  Rejection.UNAVAILABLE         503 unavailable, Retry-After
    OutcomeUnknown                      Rejection.OUTCOME_UNKNOWN     503 outcome_unknown, Retry-After
    UniqueConflict                      Rejection.CONFLICT            409 conflict

The facades the entry points call (`BillingService`, `Reports`) are wrapped with
`translates_storage_errors`: every public coroutine of theirs raises a
`BillingError`, never a storage error, so the API maps only product errors.
The deduction path translates its own on the way out of the group commit.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import structlog

from wabapool.domain.errors import BillingError, Rejection
from wabapool.storage.errors import OutcomeUnknown, StorageError, UniqueConflict

log = structlog.get_logger("wabapool.service")

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound=type)

OUTCOME_UNKNOWN_MESSAGE = "the request may or may not have been applied; retry it with the same idempotency key"
CONFLICT_MESSAGE = "a concurrent request took the same key; nothing was written"
UNAVAILABLE_MESSAGE = "the database did not answer in time; nothing was written"


def product_error(exc: StorageError) -> BillingError:
    """The product's error for a storage failure (what it means for the caller, not which driver said it)."""
    if isinstance(exc, OutcomeUnknown):
        return BillingError(Rejection.OUTCOME_UNKNOWN, OUTCOME_UNKNOWN_MESSAGE)
    if isinstance(exc, UniqueConflict):
        return BillingError(Rejection.CONFLICT, CONFLICT_MESSAGE)
    return BillingError(Rejection.UNAVAILABLE, UNAVAILABLE_MESSAGE)


def storage_failed(exc: BaseException) -> bool:
    """Whether `exc` is the store failing (a storage error, or the product error the service made of one)."""
    if isinstance(exc, StorageError):
        return True
    return isinstance(exc, BillingError) and exc.code in (Rejection.UNAVAILABLE, Rejection.OUTCOME_UNKNOWN)


def translated(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """`method`, raising `product_error(...) from` any storage error it lets out."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except StorageError as exc:
            log.warning("storage_error", error_type=type(exc).__name__, reason=str(exc))
            raise product_error(exc) from exc

    return call


def translates_storage_errors(cls: C) -> C:
    """Wrap each public coroutine method of a facade class with `translated`."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, translated(member))
    return cls
