"""The token bucket's arithmetic, and the in-process store on a hand-moved clock."""

from __future__ import annotations

import pytest

from wabapool.domain.rate import Bucket, BucketRule, refilled, retry_after_header, take
from wabapool.rate_limit import InProcessBuckets

RULE = BucketRule(rate_per_second=2.0, burst=3)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_never_seen_is_full_and_refills_at_its_rate_up_to_its_burst() -> None:
    assert refilled(None, RULE, 5.0) == 3.0
    assert refilled(Bucket(0.0, 10.0), RULE, 10.5) == 1.0
    assert refilled(Bucket(0.0, 10.0), RULE, 100.0) == 3.0
    assert refilled(Bucket(1.0, 10.0), RULE, 9.0) == 1.0  # a clock going back refills nothing


def test_an_empty_bucket_says_how_long_until_a_token() -> None:
    wait, buckets = take([Bucket(0.5, 10.0)], [RULE], 10.0)
    assert wait == pytest.approx(0.25) and buckets == [Bucket(0.5, 10.0)]
    assert retry_after_header(0.25) == "1" and retry_after_header(1.2) == "2"


def test_buckets_are_taken_all_or_none() -> None:
    other = BucketRule(rate_per_second=1.0, burst=10)
    wait, buckets = take([Bucket(0.0, 10.0), Bucket(5.0, 10.0)], [RULE, other], 10.0)
    assert wait == pytest.approx(0.5)
    assert [bucket.tokens for bucket in buckets] == [0.0, 5.0]  # the refusal took nothing from the second
    wait, buckets = take([Bucket(2.0, 10.0), Bucket(5.0, 10.0)], [RULE, other], 10.0)
    assert wait == 0 and [bucket.tokens for bucket in buckets] == [1.0, 4.0]


def test_a_rule_that_would_never_let_anything_through_is_refused() -> None:
    with pytest.raises(ValueError):
        BucketRule(rate_per_second=0, burst=1)
    with pytest.raises(ValueError):
        BucketRule(rate_per_second=1, burst=0)


async def test_the_in_process_store_lets_the_burst_through_then_one_per_refill() -> None:
    clock = Clock()
    buckets = InProcessBuckets(clock=clock)
    assert [await buckets.take(["a"], [RULE]) for _ in range(3)] == [0, 0, 0]
    assert await buckets.take(["a"], [RULE]) == pytest.approx(0.5)
    assert await buckets.take(["b"], [RULE]) == 0  # another key has its own bucket
    clock.now += 0.5
    assert await buckets.take(["a"], [RULE]) == 0
    assert await buckets.take(["a"], [RULE]) > 0


async def test_the_in_process_store_forgets_the_least_recently_used_past_its_bound() -> None:
    buckets = InProcessBuckets(clock=Clock(), max_buckets=2)
    for key in ("a", "b", "c"):
        await buckets.take([key], [BucketRule(1.0, 1)])
    assert await buckets.take(["a"], [BucketRule(1.0, 1)]) == 0  # forgotten: full again
    assert await buckets.take(["c"], [BucketRule(1.0, 1)]) > 0
