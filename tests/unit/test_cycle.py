"""Monthly cycles anchored on the package's start day, in the company's timezone."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.builders import JAKARTA, utc
from wabapool.domain.cycle import cycle_bounds, cycle_start, following_boundary, missed_cycles, next_cycle_start

WIB = ZoneInfo(JAKARTA)


def local_midnight(year: int, month: int, day: int) -> datetime:
    """Midnight in Jakarta (UTC+7, no DST) as a UTC instant."""
    return datetime(year, month, day, tzinfo=WIB).astimezone(UTC)


def test_cycle_starts_at_local_midnight_of_the_anchor_day_in_jakarta() -> None:
    start = cycle_start(utc(2026, 11, 10, 3, 0), anchor_day=1, timezone=JAKARTA)
    assert start == utc(2026, 10, 31, 17, 0)
    assert start.astimezone(WIB) == datetime(2026, 11, 1, tzinfo=WIB)


def test_the_local_date_not_the_utc_date_decides_the_cycle() -> None:
    # 2026-10-31 18:00 UTC is already 2026-11-01 01:00 in Jakarta: the November cycle.
    assert cycle_start(utc(2026, 10, 31, 18, 0), anchor_day=1, timezone=JAKARTA) == local_midnight(2026, 11, 1)
    # One second before local midnight still belongs to October.
    assert cycle_start(utc(2026, 10, 31, 16, 59, 59), anchor_day=1, timezone=JAKARTA) == local_midnight(2026, 10, 1)


def test_a_cycle_includes_its_start_instant() -> None:
    start = local_midnight(2026, 11, 1)
    assert cycle_start(start, anchor_day=1, timezone=JAKARTA) == start


def test_an_instant_before_this_months_anchor_belongs_to_last_months_cycle() -> None:
    assert cycle_start(utc(2026, 11, 10, 3, 0), anchor_day=15, timezone=JAKARTA) == local_midnight(2026, 10, 15)
    assert cycle_start(utc(2026, 11, 20, 3, 0), anchor_day=15, timezone=JAKARTA) == local_midnight(2026, 11, 15)


def test_anchor_31_in_february_falls_on_the_last_day_of_february() -> None:
    assert cycle_start(utc(2027, 2, 28, 5, 0), anchor_day=31, timezone=JAKARTA) == local_midnight(2027, 2, 28)
    assert cycle_start(utc(2028, 2, 29, 5, 0), anchor_day=31, timezone=JAKARTA) == local_midnight(2028, 2, 29)
    # The day before February's clamped anchor is still in the cycle that began on January 31.
    assert cycle_start(utc(2027, 2, 27, 5, 0), anchor_day=31, timezone=JAKARTA) == local_midnight(2027, 1, 31)


def test_a_clamped_anchor_does_not_drift_in_later_months() -> None:
    start = local_midnight(2027, 1, 31)
    seen = []
    for _ in range(5):
        start = next_cycle_start(start, anchor_day=31, timezone=JAKARTA)
        seen.append(start.astimezone(WIB).date().isoformat())
    assert seen == ["2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31", "2027-06-30"]


def test_anchor_30_clamps_in_february_and_returns_to_30_in_march() -> None:
    start = next_cycle_start(local_midnight(2027, 1, 30), anchor_day=30, timezone=JAKARTA)
    assert start == local_midnight(2027, 2, 28)
    assert next_cycle_start(start, anchor_day=30, timezone=JAKARTA) == local_midnight(2027, 3, 30)


def test_the_cycle_after_december_starts_in_january_of_the_next_year() -> None:
    assert next_cycle_start(local_midnight(2026, 12, 15), anchor_day=15, timezone=JAKARTA) == local_midnight(
        2027, 1, 15
    )


def test_cycle_bounds_are_start_inclusive_and_next_start_exclusive() -> None:
    start, end = cycle_bounds(utc(2026, 11, 10, 3, 0), anchor_day=1, timezone=JAKARTA)
    assert (start, end) == (local_midnight(2026, 11, 1), local_midnight(2026, 12, 1))
    assert cycle_start(end - timedelta(microseconds=1), anchor_day=1, timezone=JAKARTA) == start
    assert cycle_start(end, anchor_day=1, timezone=JAKARTA) == end


@pytest.mark.parametrize("anchor_day", [0, 32, -1])
def test_an_anchor_day_outside_1_to_31_is_refused(anchor_day: int) -> None:
    with pytest.raises(ValueError):
        cycle_start(utc(2026, 11, 10), anchor_day=anchor_day, timezone=JAKARTA)


def test_no_missed_cycles_while_the_current_cycle_is_still_running() -> None:
    current_end = local_midnight(2026, 12, 1)
    assert missed_cycles(current_end, utc(2026, 11, 30, 16, 59), anchor_day=1, timezone=JAKARTA, limit=120) == []


def test_the_next_cycle_counts_as_missed_from_its_first_instant() -> None:
    current_end = local_midnight(2026, 12, 1)
    assert missed_cycles(current_end, local_midnight(2026, 12, 1), anchor_day=1, timezone=JAKARTA, limit=120) == [
        (local_midnight(2026, 12, 1), local_midnight(2027, 1, 1))
    ]


def test_every_missed_cycle_is_listed_oldest_first_with_its_end() -> None:
    current_end = local_midnight(2026, 12, 1)
    cycles = missed_cycles(current_end, utc(2027, 2, 10), anchor_day=1, timezone=JAKARTA, limit=120)
    assert [start for start, _ in cycles] == [
        local_midnight(2026, 12, 1),
        local_midnight(2027, 1, 1),
        local_midnight(2027, 2, 1),
    ]
    ends = [local_midnight(2027, 1, 1), local_midnight(2027, 2, 1), local_midnight(2027, 3, 1)]
    assert [end for _, end in cycles] == ends


def test_more_missed_cycles_than_the_limit_means_a_broken_clock() -> None:
    current_end = local_midnight(2026, 12, 1)
    assert len(missed_cycles(current_end, utc(2027, 2, 10), anchor_day=1, timezone=JAKARTA, limit=3)) == 3
    with pytest.raises(ValueError):
        missed_cycles(current_end, utc(2027, 2, 10), anchor_day=1, timezone=JAKARTA, limit=2)


def test_new_terms_start_at_the_kept_end_and_the_first_cycle_after_ends_at_their_first_boundary() -> None:
    # The November cycle (anchor 1, Jakarta) keeps its end; the anchor becomes 15 from then on.
    current_end = local_midnight(2026, 12, 1)
    cycles = missed_cycles(current_end, local_midnight(2027, 1, 20), anchor_day=15, timezone=JAKARTA, limit=120)
    assert cycles == [
        (local_midnight(2026, 12, 1), local_midnight(2026, 12, 15)),
        (local_midnight(2026, 12, 15), local_midnight(2027, 1, 15)),
        (local_midnight(2027, 1, 15), local_midnight(2027, 2, 15)),
    ]


@given(
    after=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    anchor_day=st.integers(min_value=1, max_value=31),
    timezone=st.sampled_from([JAKARTA, "UTC", "America/Los_Angeles", "Pacific/Kiritimati"]),
)
def test_a_cycle_that_starts_anywhere_is_never_longer_than_one_month(
    after: datetime, anchor_day: int, timezone: str
) -> None:
    end = following_boundary(after, anchor_day=anchor_day, timezone=timezone)
    assert after < end <= after + timedelta(days=31, hours=1)


@given(
    at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    anchor_day=st.integers(min_value=1, max_value=31),
)
def test_every_instant_lies_in_the_cycle_that_starts_at_local_midnight_of_the_clamped_anchor_day(
    at: datetime, anchor_day: int
) -> None:
    start, end = cycle_bounds(at, anchor_day=anchor_day, timezone=JAKARTA)
    assert start <= at < end
    for boundary in (start, end):
        local = boundary.astimezone(WIB)
        assert (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0)
        assert local.day == min(anchor_day, calendar.monthrange(local.year, local.month)[1])
    months_apart = (end.astimezone(WIB).year * 12 + end.astimezone(WIB).month) - (
        start.astimezone(WIB).year * 12 + start.astimezone(WIB).month
    )
    assert months_apart == 1
