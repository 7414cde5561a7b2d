"""Gather concurrent deductions of one pool into one transaction.

While a company's group is being applied, new deductions for that company
queue up; when the transaction commits, everything that queued meanwhile goes
in the next one. No timer and no added latency at low load (a lone deduction
is a group of one), and under contention the pool row is locked once per
group instead of once per message. Each caller still gets its own result.

A caller's deductions of one company queue as one entry with one future, so
a batch of a thousand costs one wake-up, not a thousand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.limits import BATCH_MAX_ITEMS
from wabapool.service.deductions import Prepared
from wabapool.service.models import BatchItemResult

ApplyGroup = Callable[[int, Sequence[Prepared], str | None], Awaitable[list[BatchItemResult]]]
GroupKey = tuple[int, str | None]


@dataclass(slots=True)
class _Pending:
    """One caller's deductions of one company, answered together."""

    items: list[Prepared]
    future: asyncio.Future[list[BatchItemResult]]


class GroupCommitter:
    def __init__(self, apply: ApplyGroup, *, max_group: int = BATCH_MAX_ITEMS) -> None:
        self._apply = apply
        self._max_group = max_group
        self._queues: dict[GroupKey, list[_Pending]] = {}
        self._drainers: dict[GroupKey, asyncio.Task[None]] = {}

    async def submit(self, item: Prepared, service_name: str | None) -> BatchItemResult:
        (result,) = await self._enqueue((item.request.company_id, service_name), [item])
        return result

    async def submit_many(self, items: Sequence[Prepared], service_name: str | None) -> list[BatchItemResult]:
        """Several deductions (of one company or many); one result per item, in order.

        The items join whatever else is queued for their pool, so concurrent
        batches share transactions too; each item keeps its own outcome.
        """
        by_company: dict[int, list[int]] = {}
        for index, item in enumerate(items):
            by_company.setdefault(item.request.company_id, []).append(index)
        chunks: list[list[int]] = []
        futures = []
        for company_id, indexes in by_company.items():
            for start in range(0, len(indexes), self._max_group):
                chunk = indexes[start : start + self._max_group]
                chunks.append(chunk)
                futures.append(self._enqueue((company_id, service_name), [items[i] for i in chunk]))
        answers = await asyncio.gather(*futures, return_exceptions=True)
        results: list[BatchItemResult | None] = [None] * len(items)
        for chunk, answer in zip(chunks, answers, strict=True):
            for position, index in enumerate(chunk):
                results[index] = (
                    _unavailable(items[index], answer) if isinstance(answer, BaseException) else answer[position]
                )
        return [r for r in results if r is not None]

    def _enqueue(self, key: GroupKey, items: list[Prepared]) -> asyncio.Future[list[BatchItemResult]]:
        future: asyncio.Future[list[BatchItemResult]] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, []).append(_Pending(items, future))
        if key not in self._drainers:
            self._drainers[key] = asyncio.create_task(self._drain(key))
        return future

    async def _drain(self, key: GroupKey) -> None:
        try:
            while queue := self._queues.get(key):
                taken, size = 0, 0
                while taken < len(queue) and (taken == 0 or size + len(queue[taken].items) <= self._max_group):
                    size += len(queue[taken].items)
                    taken += 1
                group = queue[:taken]
                del queue[:taken]
                if not queue:
                    del self._queues[key]
                await self._apply_group(key, group)
        finally:
            # No await between the empty-queue check and here, so no submit can slip in unseen.
            del self._drainers[key]

    async def _apply_group(self, key: GroupKey, group: list[_Pending]) -> None:
        company_id, service_name = key
        items = [item for pending in group for item in pending.items]
        try:
            results = await self._apply(company_id, items, service_name)
        except Exception as exc:
            if len(items) == 1 or _store_down(exc):
                for pending in group:
                    _settle_error(pending, exc)
                return
            # A failure of the whole transaction must not fail innocent neighbours: apply each alone.
            for pending in group:
                await self._apply_each_alone(key, pending)
            return
        start = 0
        for pending in group:
            end = start + len(pending.items)
            if not pending.future.done():
                pending.future.set_result(results[start:end])
            start = end

    async def _apply_each_alone(self, key: GroupKey, pending: _Pending) -> None:
        company_id, service_name = key
        results: list[BatchItemResult] = []
        for item in pending.items:
            try:
                results += await self._apply(company_id, [item], service_name)
            except Exception as exc:
                if len(pending.items) == 1:
                    _settle_error(pending, exc)
                    return
                results.append(_unavailable(item, exc))
        if not pending.future.done():
            pending.future.set_result(results)


def _store_down(exc: Exception) -> bool:
    """The database itself failed: applying the items one by one would fail the same way."""
    return isinstance(exc, (OperationalError, InterfaceError, OSError, TimeoutError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def _unavailable(item: Prepared, exc: BaseException) -> BatchItemResult:
    error = BillingError(
        Rejection.UNAVAILABLE, "the deduction could not be stored; retry it", {"reason": type(exc).__name__}
    )
    return BatchItemResult(item.request.unique_code, "rejected", error=error)


def _settle_error(pending: _Pending, exc: Exception) -> None:
    if not pending.future.done():
        pending.future.set_exception(exc)
