"""The group committer's coordination, with an in-memory apply function (no database)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from wabapool.service.deduction_rows import Prepared
from wabapool.service.group_commit import GroupCommitter
from wabapool.service.models import BatchItemResult, DeductionRequest
from wabapool.storage.errors import OutcomeUnknown, StorageUnavailable


def request(code: str, company_id: int = 1) -> Prepared:
    deduction = DeductionRequest(company_id, "wa", "wa_marketing_id", code, 1, "111")
    return Prepared(deduction, deduction.payload_bytes().hex(), None, None, None)


class RecordingApply:
    """Records each group it is handed. `held=True`: every transaction waits for `release` (set by the test),
    so what queues behind one in flight is decided by the test's steps, not by how long a pause lasts."""

    def __init__(
        self, *, poison: str | None = None, down: bool = False, commit_fails: bool = False, held: bool = False
    ) -> None:
        self.groups: list[list[str]] = []
        self.poison = poison
        self.down = down
        self.commit_fails = commit_fails
        self.release = asyncio.Event()
        if not held:
            self.release.set()

    async def __call__(self, items: Sequence[Prepared]) -> list[BatchItemResult]:
        requests = [item.request for item in items]
        self.groups.append([r.unique_code for r in requests])
        await asyncio.sleep(0)  # a transaction awaits the database: the loop turns meanwhile
        await self.release.wait()
        if self.down:
            raise StorageUnavailable("ConnectionRefusedError")
        if self.commit_fails:
            raise OutcomeUnknown("ConnectionDoesNotExistError")
        if any(r.unique_code == self.poison for r in requests):
            raise ValueError("this item breaks the transaction")
        return [BatchItemResult(r.unique_code, "applied") for r in requests]


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop turn until the condition holds (a bounded number of turns, no clock)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def queued(committer: GroupCommitter) -> int:
    """Deductions waiting in the committer's queue (not yet in a group)."""
    return sum(committer._queued_items.values())  # noqa: SLF001 - the queue's own count


async def held_alone(
    committer: GroupCommitter, apply: RecordingApply, item: Prepared
) -> asyncio.Future[BatchItemResult]:
    """`item` submitted, and its group's transaction under way and held: what is submitted next queues behind it."""
    first = asyncio.ensure_future(committer.submit(item))
    await until(lambda: apply.groups == [[item.request.unique_code]])
    return first


async def test_concurrent_deductions_of_one_pool_share_transactions() -> None:
    apply = RecordingApply()
    committer = GroupCommitter(apply)
    results = await asyncio.gather(*(committer.submit(request(f"m{i}")) for i in range(50)))
    assert [r.unique_code for r in results] == [f"m{i}" for i in range(50)]
    assert len(apply.groups) <= 3  # the first alone, then everything that queued meanwhile
    assert sorted(code for group in apply.groups for code in group) == sorted(f"m{i}" for i in range(50))


async def test_deductions_of_different_pools_share_one_transaction_each_with_its_own_result() -> None:
    apply = RecordingApply(held=True)
    committer = GroupCommitter(apply, max_in_flight=1)
    first = await held_alone(committer, apply, request("lone", company_id=99))
    submitted = asyncio.gather(*(committer.submit(request(f"m{i}", company_id=i + 1)) for i in range(10)))
    await until(lambda: queued(committer) == 10)
    apply.release.set()
    results = await submitted
    await first
    assert [r.unique_code for r in results] == [f"m{i}" for i in range(10)]
    assert apply.groups == [["lone"], [f"m{i}" for i in range(10)]]


async def test_a_company_in_a_group_being_applied_waits_while_other_companies_start_at_once() -> None:
    apply = RecordingApply(held=True)
    committer = GroupCommitter(apply, max_in_flight=2)
    first = await held_alone(committer, apply, request("a1", company_id=1))
    later = [asyncio.ensure_future(committer.submit(request(c, company_id=n))) for c, n in (("a2", 1), ("b1", 2))]
    await until(lambda: len(apply.groups) == 2)
    # b1 started beside a1's group; a2 waits for a1's group to end (a company's deductions apply in order).
    assert apply.groups == [["a1"], ["b1"]]
    assert queued(committer) == 1
    apply.release.set()
    await asyncio.gather(first, *later)
    assert apply.groups == [["a1"], ["b1"], ["a2"]]


async def test_a_group_spans_at_most_the_pool_limit_and_the_rest_wait_for_the_next() -> None:
    apply = RecordingApply(held=True)
    committer = GroupCommitter(apply, max_pools=3, max_in_flight=1)
    first = await held_alone(committer, apply, request("lone", company_id=99))
    submitted = asyncio.gather(*(committer.submit(request(f"m{i}", company_id=i % 5 + 1)) for i in range(10)))
    await until(lambda: queued(committer) == 10)
    apply.release.set()
    await submitted
    await first
    # Companies 1, 2, 3 (and their second deductions) first, then 4 and 5: never more than three pools a group.
    assert apply.groups == [["lone"], ["m0", "m1", "m2", "m5", "m6", "m7"], ["m3", "m4", "m8", "m9"]]


async def test_an_item_that_breaks_its_group_does_not_fail_its_neighbours() -> None:
    apply = RecordingApply(poison="m3")
    committer = GroupCommitter(apply)
    outcomes = await asyncio.gather(*(committer.submit(request(f"m{i}")) for i in range(8)), return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], ValueError)
    assert [o.unique_code for o in outcomes if isinstance(o, BatchItemResult)] == [f"m{i}" for i in range(8) if i != 3]


async def test_a_database_outage_fails_the_group_once_without_retrying_item_by_item() -> None:
    apply = RecordingApply(down=True)
    committer = GroupCommitter(apply)
    outcomes = await committer.submit_many([request(f"m{i}") for i in range(5)])
    assert {o.status for o in outcomes} == {"rejected"}
    assert {o.error.code.value for o in outcomes if o.error} == {"unavailable"}
    assert len(apply.groups) == 1


async def test_groups_never_exceed_the_maximum() -> None:
    apply = RecordingApply()
    committer = GroupCommitter(apply, max_group=4)
    await committer.submit_many([request(f"m{i}") for i in range(10)])
    assert max(len(g) for g in apply.groups) == 4


async def test_a_batch_item_that_breaks_its_group_is_unavailable_and_its_neighbours_are_applied() -> None:
    apply = RecordingApply(poison="m3")
    committer = GroupCommitter(apply)
    outcomes = await committer.submit_many([request(f"m{i}") for i in range(6)])
    assert [(o.unique_code, o.status) for o in outcomes] == [
        (f"m{i}", "rejected" if i == 3 else "applied") for i in range(6)
    ]
    assert outcomes[3].error is not None and outcomes[3].error.code.value == "unavailable"


async def test_a_batch_over_several_companies_answers_in_the_callers_order() -> None:
    apply = RecordingApply()
    committer = GroupCommitter(apply, max_group=3)
    items = [request(f"m{i}", company_id=i % 3 + 1) for i in range(20)]
    outcomes = await committer.submit_many(items)
    assert [o.unique_code for o in outcomes] == [f"m{i}" for i in range(20)]
    assert max(len(g) for g in apply.groups) == 3


async def test_batches_queued_together_share_one_transaction() -> None:
    apply = RecordingApply(held=True)
    committer = GroupCommitter(apply)
    first = await held_alone(committer, apply, request("lone"))
    batches = [[request(f"b{b}-{i}") for i in range(10)] for b in range(3)]
    submitted = asyncio.gather(*(committer.submit_many(batch) for batch in batches))
    await until(lambda: queued(committer) == 30)
    apply.release.set()
    answers = await submitted
    await first
    assert [[o.unique_code for o in answer] for answer in answers] == [
        [i.request.unique_code for i in b] for b in batches
    ]
    assert apply.groups == [["lone"], [i.request.unique_code for b in batches for i in b]]


async def test_a_failed_commit_tells_every_caller_of_the_group_the_outcome_is_unknown_and_retries_nothing() -> None:
    apply = RecordingApply(commit_fails=True)
    committer = GroupCommitter(apply)
    single = asyncio.ensure_future(committer.submit(request("lone")))
    batch = asyncio.ensure_future(committer.submit_many([request(f"m{i}") for i in range(4)]))
    outcomes = [await single, *await batch]
    assert {o.error.code.value for o in outcomes if o.error} == {"outcome_unknown"}
    assert all(o.status == "rejected" for o in outcomes)
    # Retrying item by item could apply twice what the failed commit may have stored.
    assert sorted(code for group in apply.groups for code in group) == sorted(["lone", "m0", "m1", "m2", "m3"])


async def test_a_full_queue_refuses_new_deductions_as_overloaded_without_queueing_them() -> None:
    apply = RecordingApply()
    committer = GroupCommitter(apply, max_group=2, max_queued=3)
    outcomes = await asyncio.gather(*(committer.submit(request(f"m{i}")) for i in range(6)))
    overloaded = [o.unique_code for o in outcomes if o.error and o.error.code.value == "overloaded"]
    applied = [o.unique_code for o in outcomes if o.status == "applied"]
    assert overloaded == ["m3", "m4", "m5"]
    assert applied == ["m0", "m1", "m2"]
    assert sorted(code for group in apply.groups for code in group) == applied


async def test_cancelling_a_drain_settles_every_future_in_flight_as_unknown_and_queued_as_unavailable() -> None:
    started = asyncio.Event()

    async def slow(items: Sequence[Prepared]) -> list[BatchItemResult]:
        started.set()
        await asyncio.Event().wait()  # a transaction that does not end by itself: only the cancel ends it
        return [BatchItemResult(i.request.unique_code, "applied") for i in items]

    committer = GroupCommitter(slow)
    first = asyncio.ensure_future(committer.submit(request("first")))
    await started.wait()
    second = asyncio.ensure_future(committer.submit(request("second")))
    await until(lambda: queued(committer) == 1)
    for task in list(committer._groups):  # noqa: SLF001 - the group's task is what gets cancelled
        task.cancel()
    in_flight, waiting = await asyncio.wait_for(asyncio.gather(first, second), timeout=10)  # a hang's bound
    assert in_flight.error is not None and in_flight.error.code.value == "outcome_unknown"
    assert waiting.error is not None and waiting.error.code.value == "unavailable"
