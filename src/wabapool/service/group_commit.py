"""The deduction queue: gather concurrent deductions, of one pool or of many, into shared transactions.

Step 1 of the deduction path, and the only one that knows of concurrency:
`BillingService.deduct_one` submits here; the queue takes what is waiting as
groups and hands each to `apply` (in the engine, `deductions.DeductionGroups.apply`:
step 2, the unit of work, in which step 3, `domain.deduction.decide`, answers).
The queue knows nothing of SQL; it is tested with an in-memory `apply`.

A group spans pools: deductions waiting for different companies share one
transaction (the unit of work locks their pools in a fixed order, so two
processes never deadlock). While a company is in a group being applied, its
later deductions wait for the next group, so one company's deductions are
applied in the order they came; other companies' may start at once, in
another group, up to `MAX_GROUPS_IN_FLIGHT`. No timer and no added latency at
low load (a lone deduction is a group of one). Each caller still gets its own
result.

A caller's deductions of one company queue as one entry with one future, so
a batch of a thousand costs one wake-up, not a thousand.

What a caller is told when a group fails, by when it failed:
- before commit (the database unreachable, a lock or statement timeout):
  `unavailable`, nothing was written, a retry is safe;
- a bug or a poisoned item before commit: the group rolled back, so each
  caller's entry (one company's items) is applied again on its own and a bad
  one fails alone, never another company's;
- during or after commit, or cancelled while the transaction was open:
  `outcome_unknown`; a retry with the same unique_code answers the original
  result if it was applied, or applies it once.
Every future is settled, whatever happens, cancellation included.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.limits import (
    BATCH_MAX_ITEMS,
    MAX_GROUPS_IN_FLIGHT,
    MAX_POOLS_PER_GROUP,
    MAX_QUEUED_DEDUCTIONS_PER_POOL,
)
from wabapool.service.deduction_rows import Prepared
from wabapool.service.models import BatchItemResult
from wabapool.storage.errors import OutcomeUnknown, StorageTimeout, StorageUnavailable

ApplyGroup = Callable[[Sequence[Prepared]], Awaitable[list[BatchItemResult]]]


@dataclass(slots=True)
class _Pending:
    """One caller's deductions of one company, answered together."""

    company_id: int
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
    """The queue of one process: groups of waiting deductions, applied a few at a time, company-disjoint."""

    def __init__(
        self,
        apply: ApplyGroup,
        *,
        max_group: int = BATCH_MAX_ITEMS,
        max_pools: int = MAX_POOLS_PER_GROUP,
        max_queued: int = MAX_QUEUED_DEDUCTIONS_PER_POOL,
        max_in_flight: int = MAX_GROUPS_IN_FLIGHT,
    ) -> None:
        self._apply = apply
        self._max_group = max_group
        self._max_pools = max_pools
        self._max_queued = max_queued
        self._max_in_flight = max_in_flight
        self._queue: deque[_Pending] = deque()
        self._queued_items: dict[int, int] = {}  # per company, for the overload bound
        self._busy: set[int] = set()  # companies in a group being applied
        self._groups: dict[asyncio.Task[None], list[_Pending]] = {}
        self._start_scheduled = False

    async def submit(self, item: Prepared) -> BatchItemResult:
        (result,) = await self._enqueue(item.request.company_id, [item])
        return result

    async def submit_many(self, items: Sequence[Prepared]) -> list[BatchItemResult]:
        """Several deductions (of one company or many); one result per item, in order.

        The items join whatever else is queued, so concurrent batches share
        transactions too; each item keeps its own outcome.
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
                futures.append(self._enqueue(company_id, [items[i] for i in chunk]))
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

    def _enqueue(self, company_id: int, items: list[Prepared]) -> asyncio.Future[list[BatchItemResult]]:
        future: asyncio.Future[list[BatchItemResult]] = asyncio.get_running_loop().create_future()
        queued = self._queued_items.get(company_id, 0)
        if queued + len(items) > self._max_queued:
            future.set_result(_rejected(items, overloaded(queued)))
            return future
        self._queue.append(_Pending(company_id, items, future))
        self._queued_items[company_id] = queued + len(items)
        if not self._start_scheduled:
            # Groups start on the loop's next turn, so deductions submitted in the same turn share one.
            self._start_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_groups)
        return future

    def _start_groups(self) -> None:
        """Start a group for what is waiting, while fewer than `max_in_flight` run and something can go."""
        self._start_scheduled = False
        while self._queue and len(self._groups) < self._max_in_flight:
            if self._queued_items.keys() <= self._busy:
                return  # everything waiting belongs to a company being applied: its group's end starts the next
            group = self._take()
            if not group:
                return
            # The trail goes on in `_run`: each group is applied by a task of its own.
            task = asyncio.create_task(self._run(group), name=f"deduction-group-{group[0].company_id}")
            self._groups[task] = group

    def _take(self) -> list[_Pending]:
        """The next group, in arrival order: whole entries of companies not being applied, within the limits.

        An entry of a company already in a group waits for it (so a company's
        deductions apply in order); an entry past the limits waits for the next group.
        """
        group: list[_Pending] = []
        companies: set[int] = set()
        size = 0
        kept: list[_Pending] = []
        while self._queue:
            pending = self._queue.popleft()
            company_id = pending.company_id
            fits = size + len(pending.items) <= self._max_group or not group
            new_company = company_id not in companies
            if company_id in self._busy or not fits or (new_company and len(companies) >= self._max_pools):
                kept.append(pending)
                if size >= self._max_group:
                    break
                continue
            group.append(pending)
            companies.add(company_id)
            size += len(pending.items)
        self._queue.extendleft(reversed(kept))
        for pending in group:
            left = self._queued_items[pending.company_id] - len(pending.items)
            if left:
                self._queued_items[pending.company_id] = left
            else:
                del self._queued_items[pending.company_id]
        self._busy |= companies
        return group

    async def _run(self, group: list[_Pending]) -> None:
        try:
            await self._apply_group(group)
        except asyncio.CancelledError:
            # The group in flight may have committed; what still queued never reached the database.
            _settle(group, outcome_unknown("cancelled"))
            _settle(list(self._queue), unavailable("cancelled"))
            self._queue.clear()
            self._queued_items.clear()
            raise
        finally:
            # No await between here and the next start, so no submit can slip in unseen.
            self._busy -= {pending.company_id for pending in group}
            del self._groups[asyncio.current_task()]  # type: ignore[arg-type]
            self._start_groups()

    async def _apply_group(self, group: list[_Pending]) -> None:
        items = [item for pending in group for item in pending.items]
        try:
            results = await self._apply(items)
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
                await self._apply_each_alone(pending)
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

    async def _apply_each_alone(self, pending: _Pending) -> None:
        results: list[BatchItemResult] = []
        for item in pending.items:
            try:
                (result,) = await self._apply([item])
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
