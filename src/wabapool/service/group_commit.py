"""Gather concurrent single deductions of one pool into one transaction.

While a company's group is being applied, new deductions for that company
queue up; when the transaction commits, everything that queued meanwhile goes
in the next one. No timer and no added latency at low load (a lone deduction
is a group of one), and under contention the pool row is locked once per
group instead of once per message. Each caller still gets its own result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.limits import BATCH_MAX_ITEMS
from wabapool.service.models import BatchItemResult, DeductionRequest

ApplyGroup = Callable[[int, Sequence[DeductionRequest], str | None], Awaitable[list[BatchItemResult]]]
GroupKey = tuple[int, str | None]


@dataclass(slots=True)
class _Pending:
    request: DeductionRequest
    future: asyncio.Future[BatchItemResult]


class GroupCommitter:
    def __init__(self, apply: ApplyGroup, *, max_group: int = BATCH_MAX_ITEMS) -> None:
        self._apply = apply
        self._max_group = max_group
        self._queues: dict[GroupKey, list[_Pending]] = {}
        self._drainers: dict[GroupKey, asyncio.Task[None]] = {}

    async def submit(self, request: DeductionRequest, service_name: str | None) -> BatchItemResult:
        return await self._enqueue(request, service_name)

    async def submit_many(
        self, requests: Sequence[DeductionRequest], service_name: str | None
    ) -> list[BatchItemResult]:
        """Several deductions (of one company or many); one result per item, in order.

        The items join whatever else is queued for their pool, so concurrent
        batches share transactions too; each item keeps its own outcome.
        """
        futures = [self._enqueue(request, service_name) for request in requests]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        return [
            _unavailable(request, outcome) if isinstance(outcome, BaseException) else outcome
            for request, outcome in zip(requests, outcomes, strict=True)
        ]

    def _enqueue(self, request: DeductionRequest, service_name: str | None) -> asyncio.Future[BatchItemResult]:
        key = (request.company_id, service_name)
        future: asyncio.Future[BatchItemResult] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, []).append(_Pending(request, future))
        if key not in self._drainers:
            self._drainers[key] = asyncio.create_task(self._drain(key))
        return future

    async def _drain(self, key: GroupKey) -> None:
        try:
            while queue := self._queues.get(key):
                group = queue[: self._max_group]
                del queue[: self._max_group]
                if not queue:
                    del self._queues[key]
                await self._apply_group(key, group)
        finally:
            # No await between the empty-queue check and here, so no submit can slip in unseen.
            del self._drainers[key]

    async def _apply_group(self, key: GroupKey, group: list[_Pending]) -> None:
        company_id, service_name = key
        try:
            results = await self._apply(company_id, [p.request for p in group], service_name)
        except Exception as exc:
            if len(group) == 1 or _store_down(exc):
                for pending in group:
                    _settle_error(pending, exc)
                return
            # A failure of the whole transaction must not fail innocent neighbours: apply each alone.
            for pending in group:
                await self._apply_group(key, [pending])
            return
        for pending, result in zip(group, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)


def _store_down(exc: Exception) -> bool:
    """The database itself failed: applying the items one by one would fail the same way."""
    return isinstance(exc, (OperationalError, InterfaceError, OSError, TimeoutError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def _unavailable(request: DeductionRequest, exc: BaseException) -> BatchItemResult:
    error = BillingError(
        Rejection.UNAVAILABLE, "the deduction could not be stored; retry it", {"reason": type(exc).__name__}
    )
    return BatchItemResult(request.unique_code, "rejected", error=error)


def _settle_error(pending: _Pending, exc: Exception) -> None:
    if not pending.future.done():
        pending.future.set_exception(exc)
