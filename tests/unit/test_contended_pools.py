"""A company whose pool was found moved takes the lock for a moment, then tries without it again."""

from __future__ import annotations

from wabapool.service.contended_pools import ContendedPools


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_pool_found_moved_is_contended_for_its_seconds_then_free_again() -> None:
    clock = _Clock()
    pools = ContendedPools(seconds=1.0, clock=clock)
    assert not pools.contended(7)
    pools.found_moved(7)
    clock.now += 0.999
    assert pools.contended(7) and not pools.contended(8)
    clock.now += 0.001
    assert not pools.contended(7)


def test_found_moved_again_extends_the_moment_from_the_latest_time() -> None:
    clock = _Clock()
    pools = ContendedPools(seconds=1.0, clock=clock)
    pools.found_moved(7)
    clock.now += 0.5
    pools.found_moved(7)
    clock.now += 0.9
    assert pools.contended(7)


def test_past_its_bound_the_company_found_moved_longest_ago_is_forgotten() -> None:
    clock = _Clock()
    pools = ContendedPools(seconds=10.0, max_companies=2, clock=clock)
    for company_id in (1, 2, 3):
        pools.found_moved(company_id)
    assert [pools.contended(company_id) for company_id in (1, 2, 3)] == [False, True, True]
