"""The backfill's money rules without a database: the sums, the moves that explain them, the split back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from wabapool.domain import migration
from wabapool.domain.operations import PoolState
from wabapool.domain.pool import Buckets, MoveKind, QuotaType

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)


def state(buckets: Buckets, *, waba_id: str | None = "w", funded: int = 0) -> PoolState:
    return PoolState(1, buckets, START, END, 1, "UTC", funded, waba_id=waba_id)


def test_summed_adds_every_figure_and_counts_only_the_used_an_allowance_covers() -> None:
    parts = [Buckets(5_000, 3_800, 700, 0, 0, 1_200), Buckets(2_000, 0, 0, 3_000, 1_500, 2_600)]
    assert migration.summed(parts) == Buckets(7_000, 3_800, 700, 3_000, 1_500, 3_200)


def test_merge_moves_every_unit_as_a_pair_of_migration_moves() -> None:
    sources = [
        state(Buckets(5_000, 3_800, 700, 0, 0, 1_200), funded=5_700),
        state(Buckets(2_000, 0, 0, 3_000, 1_500, 2_000), funded=2_000),
    ]
    merged = migration.merge(state(Buckets(), waba_id=None), sources)
    assert merged.pool.buckets == Buckets(7_000, 3_800, 700, 3_000, 1_500, 3_200)
    assert merged.pool.funded_base_minor == 7_700
    for source in merged.sources:
        assert source.state.buckets.total == 0
        assert (source.state.buckets.initial_allowance, source.state.buckets.postpaid_limit) != (0, 0)
        assert sum(m.amount_minor for m in source.moves) == -sum(m.amount_minor for m in source.pool_moves)
        assert {m.kind for m in source.moves + source.pool_moves} == {MoveKind.MIGRATION}
    postpaid = merged.sources[1].pool_moves[0]
    assert (postpaid.quota_type, postpaid.amount_minor, postpaid.bucket_after_minor) == (
        QuotaType.POSTPAID,
        -1_500,
        1_500,
    )


def test_merge_into_a_pool_already_below_zero_counts_it_as_warned_this_cycle() -> None:
    merged = migration.merge(state(Buckets(), waba_id=None), [state(Buckets(0, 0, 0, 1_000, 400))])
    assert merged.pool.is_below_zero and merged.pool.below_zero_cycle_start == START


def test_apportion_floors_to_the_minor_unit_and_gives_the_remainder_to_the_first_part() -> None:
    assert migration.apportion(100, [1, 1, 1], [None, None, None]) == [34, 33, 33]
    assert migration.apportion(10, [0, 0], [None, None]) == [10, 0]


def test_apportion_never_puts_more_than_a_capacity_in_a_part() -> None:
    assert migration.apportion(2, [1, 1, 1], [1, 1, 1]) == [1, 1, 0]
    with pytest.raises(ValueError):
        migration.apportion(4, [1, 1, 1], [1, 1, 1])


def test_split_returns_each_part_its_terms_and_its_share_of_what_is_left() -> None:
    brought = [Buckets(5_000, 3_800, 700, 0, 0, 1_200), Buckets(2_000, 0, 0, 3_000, 1_500, 2_000), Buckets(0, 0, 2_500)]
    # The pool after a v3 deduction of 1,001 from its allowance.
    pool = Buckets(7_000, 2_799, 3_200, 3_000, 1_500, 4_201)
    shares = migration.split(pool, brought)
    assert shares[0] == Buckets(5_000, 2_799, 700, 0, 0, 2_201)
    assert shares[1] == Buckets(2_000, 0, 0, 3_000, 1_500, 2_000)
    assert shares[2] == Buckets(0, 0, 2_500, 0, 0, 0)
    assert migration.summed(shares) == pool


def test_split_of_an_odd_remainder_goes_to_the_first_wabas_package() -> None:
    shares = migration.split(Buckets(additional_remaining=1_001), [Buckets(0, 0, 500), Buckets(0, 0, 500)])
    assert [s.additional_remaining for s in shares] == [501, 500]


def test_unmerge_refuses_a_pool_that_no_longer_holds_what_was_brought() -> None:
    brought = [Buckets(0, 0, 500)]
    assert migration.unmerge(Buckets(0, 0, 700), brought) == Buckets(0, 0, 200)
    with pytest.raises(ValueError):
        migration.unmerge(Buckets(0, 0, 400), brought)


def test_merge_refuses_packages_whose_sum_passes_the_ceiling_on_money() -> None:
    from wabapool.domain.errors import BillingError, Rejection
    from wabapool.domain.limits import AMOUNT_MAX_MINOR

    half = AMOUNT_MAX_MINOR // 2 + 1
    sources = [state(Buckets(0, 0, half, 0, 0)), state(Buckets(0, 0, half, 0, 0))]
    with pytest.raises(BillingError) as refused:
        migration.merge(state(Buckets(), waba_id=None), sources)
    assert refused.value.code is Rejection.AMOUNT_TOO_LARGE and "nothing was moved" in refused.value.message
    exact = [state(Buckets(0, 0, half, 0, 0)), state(Buckets(0, 0, AMOUNT_MAX_MINOR - half, 0, 0))]
    assert migration.merge(state(Buckets(), waba_id=None), exact).pool.buckets.available == AMOUNT_MAX_MINOR
