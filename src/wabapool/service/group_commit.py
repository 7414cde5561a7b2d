"""The deduction queue: gather concurrent deductions of one pool into one transaction.

Step 1 of the deduction path, and the only one that knows of concurrency:
`BillingService.deduct_one` submits here; a drainer task per pool takes the
queued deductions as groups and hands each to `apply` (in the engine,
`deductions.DeductionGroups.apply`: step 2, the unit of work, which step 3,
`domain.deduction.decide`, answers). The queue knows nothing of SQL; it is
tested with an in-memory `apply`.

While a company's group is being applied, new deductions for that company
queue up; when the transaction commits, everything that queued meanwhile goes
in the next one. No timer and no added latency at low load (a lone deduction
is a group of one), and under contention the pool row is locked once per
group instead of once per message. Each caller still gets its own result.

A caller's deductions of one company queue as one entry with one future, so
a batch of a thousand costs one wake-up, not a thousand.

What a caller is told when a group fails, by when it failed:
- before commit (the database unreachable, a lock or statement timeout):
  `unavailable`, nothing was written, a retry is safe;
- a bug or a poisoned item before commit: the group rolled back, so each
  caller's items are applied again on their own and a bad one fails alone;
- during or after commit, or cancelled while the transaction was open:
  `outcome_unknown`; a retry with the same unique_code answers the original
  result if it was applied, or applies it once.
Every future is settled, whatever happens, cancellation included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.limits import BATCH_MAX_ITEMS, MAX_QUEUED_DEDUCTIONS_PER_POOL
from wabapool.service.deductions import Prepared
from wabapool.service.models import BatchItemResult
from wabapool.storage.errors import OutcomeUnknown, StorageTimeout, StorageUnavailable

ApplyGroup = Callable[[int, Sequence[Prepared], str | None], Awaitable[list[BatchItemResult]]]
GroupKey = tuple[int, str | None]


@dataclass(slots=True)
class _Pending:
    """One caller's deductions of one company, answered together."""

    items: list[Prepared]
    future: asyncio.Future[list[BatchItemResult]]


def _rejected(items: Sequence[Prepared], error: BillingError) -> list[BatchItemResult]:
    return [BatchItemResult(item.request.unique_code, "rejected", error=error) for item in items]


def unavailable(reason: str) -> BillingError:
    return BillingError(
        Rejection.UNAVAILABLE, "the deduction could not be stored; nothing was written, retry it", {"reason": reason}
    )


def outcome_unknown(reason: str) -> BillingError:
    return BillingError(
        Rejection.OUTCOME_UNKNOWN,
        "the deduction may or may not have been applied; retry with the same unique_code",
        {"reason": reason},
    )


def overloaded(queued: int) -> BillingError:
    return BillingError(
        Rejection.OVERLOADED,
        "too many deductions are queued for this pool; nothing was written, retry shortly",
        {"queued": queued, "max_queued": MAX_QUEUED_DEDUCTIONS_PER_POOL},
    )


class GroupCommitter:
    def __init__(
        self,
        apply: ApplyGroup,
        *,
        max_group: int = BATCH_MAX_ITEMS,
        max_queued: int = MAX_QUEUED_DEDUCTIONS_PER_POOL,
    ) -> None:
        self._apply = apply
        self._max_group = max_group
        self._max_queued = max_queued
        self._queues: dict[GroupKey, list[_Pending]] = {}
        self._queued_items: dict[GroupKey, int] = {}
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
            if isinstance(answer, BaseException):
                # Only a failure before commit reaches here as an exception (see `_apply_group`).
                answer = _rejected([items[i] for i in chunk], unavailable(type(answer).__name__))
            if len(answer) != len(chunk):
                raise RuntimeError(f"a group answered {len(answer)} results for {len(chunk)} items")
            for index, outcome in zip(chunk, answer, strict=True):
                results[index] = outcome
        answered: list[BatchItemResult] = []
        for index, result in enumerate(results):
            if result is None:
                raise RuntimeError(f"deduction {index} of a batch was left without an outcome")
            answered.append(result)
        return answered

    def _enqueue(self, key: GroupKey, items: list[Prepared]) -> asyncio.Future[list[BatchItemResult]]:
        future: asyncio.Future[list[BatchItemResult]] = asyncio.get_running_loop().create_future()
        queued = self._queued_items.get(key, 0)
        if queued + len(items) > self._max_queued:
            future.set_result(_rejected(items, overloaded(queued)))
            return future
        self._queues.setdefault(key, []).append(_Pending(items, future))
        self._queued_items[key] = queued + len(items)
        if key not in self._drainers:
            # The trail goes on in `_drain`: one task per pool applies its groups one after another.
            self._drainers[key] = asyncio.create_task(self._drain(key), name=f"deduction-queue-{key[0]}")
        return future

    def _take(self, key: GroupKey) -> list[_Pending]:
        """The next group: whole callers' entries, up to the group size (at least one entry)."""
        queue = self._queues[key]
        taken, size = 0, 0
        while taken < len(queue) and (taken == 0 or size + len(queue[taken].items) <= self._max_group):
            size += len(queue[taken].items)
            taken += 1
        group = queue[:taken]
        del queue[:taken]
        self._queued_items[key] -= size
        if not queue:
            del self._queues[key]
            del self._queued_items[key]
        return group

    async def _drain(self, key: GroupKey) -> None:
        group: list[_Pending] = []
        try:
            while self._queues.get(key):
                group = self._take(key)
                await self._apply_group(key, group)
                group = []
        except asyncio.CancelledError:
            # The group in flight may have committed; what still queued never reached the database.
            _settle(group, outcome_unknown("cancelled"))
            _settle(self._queues.pop(key, []), unavailable("cancelled"))
            self._queued_items.pop(key, None)
            raise
        finally:
            # No await between the empty-queue check and here, so no submit can slip in unseen.
            del self._drainers[key]

    async def _apply_group(self, key: GroupKey, group: list[_Pending]) -> None:
        company_id, service_name = key
        items = [item for pending in group for item in pending.items]
        try:
            results = await self._apply(company_id, items, service_name)
        except OutcomeUnknown as exc:
            _settle(group, outcome_unknown(str(exc) or type(exc).__name__))
            return
        except (StorageUnavailable, StorageTimeout) as exc:
            _settle(group, unavailable(type(exc).__name__))
            return
        except Exception as exc:
            # Before commit, so nothing was written: a failure of the whole transaction must not fail
            # innocent neighbours, so apply each caller's items alone.
            if len(items) == 1:
                _settle_error(group[0], exc)
                return
            for pending in group:
                await self._apply_each_alone(key, pending)
            return
        if len(results) != len(items):
            # Committed, but the answers do not line up: no caller can be told which is theirs.
            _settle(group, outcome_unknown("results out of step"))
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
                (result,) = await self._apply(company_id, [item], service_name)
            except OutcomeUnknown as exc:
                result = _rejected([item], outcome_unknown(type(exc).__name__))[0]
            except Exception as exc:
                if len(pending.items) == 1:
                    _settle_error(pending, exc)
                    return
                result = _rejected([item], unavailable(type(exc).__name__))[0]
            results.append(result)
        if not pending.future.done():
            pending.future.set_result(results)


def _settle(group: Sequence[_Pending], error: BillingError) -> None:
    for pending in group:
        if not pending.future.done():
            pending.future.set_result(_rejected(pending.items, error))


def _settle_error(pending: _Pending, exc: Exception) -> None:
    if not pending.future.done():
        pending.future.set_exception(exc)
