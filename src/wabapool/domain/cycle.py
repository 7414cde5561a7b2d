"""Monthly billing cycles anchored on the package's start day, in the company's timezone.

An anchor day past the month's end (31 in February) falls on the month's last day.

A pool keeps its current cycle's end. A change of the anchor day or of the
company's timezone takes effect at that end: the next cycle runs from it to
the first boundary of the new terms after it (`following_boundary`). So the
current cycle keeps its end, no change refills anything, and no cycle is
longer than one month (the first boundary after any instant is at most a
month away).
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo


def _anchor_date(year: int, month: int, anchor_day: int) -> date:
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


def _shift_month(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def _local_midnight_utc(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def cycle_start(at: datetime, *, anchor_day: int, timezone: str) -> datetime:
    """Start (UTC) of the cycle that contains `at`."""
    if not 1 <= anchor_day <= 31:
        raise ValueError("anchor_day is 1..31")
    zone = ZoneInfo(timezone)
    local = at.astimezone(zone)
    year, month = local.year, local.month
    start = _local_midnight_utc(_anchor_date(year, month, anchor_day), zone)
    if at < start:
        year, month = _shift_month(year, month, -1)
        start = _local_midnight_utc(_anchor_date(year, month, anchor_day), zone)
    return start


def next_cycle_start(start: datetime, *, anchor_day: int, timezone: str) -> datetime:
    """Start (UTC) of the cycle after the one starting at `start`."""
    zone = ZoneInfo(timezone)
    local = start.astimezone(zone)
    year, month = _shift_month(local.year, local.month, 1)
    return _local_midnight_utc(_anchor_date(year, month, anchor_day), zone)


def cycle_bounds(at: datetime, *, anchor_day: int, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of the cycle containing `at`."""
    start = cycle_start(at, anchor_day=anchor_day, timezone=timezone)
    return start, next_cycle_start(start, anchor_day=anchor_day, timezone=timezone)


def following_boundary(after: datetime, *, anchor_day: int, timezone: str) -> datetime:
    """The first cycle boundary of these terms strictly after `after`: where a cycle starting at `after` ends."""
    return cycle_bounds(after, anchor_day=anchor_day, timezone=timezone)[1]


def missed_cycles(
    current_end: datetime, at: datetime, *, anchor_day: int, timezone: str, limit: int
) -> list[tuple[datetime, datetime]]:
    """[start, end) of every cycle that began at `current_end` or later and by `at`, oldest first."""
    cycles: list[tuple[datetime, datetime]] = []
    start = current_end
    while start <= at:
        if len(cycles) >= limit:
            raise ValueError(f"more than {limit} missed cycles: the clock or the data is wrong")
        end = following_boundary(start, anchor_day=anchor_day, timezone=timezone)
        cycles.append((start, end))
        start = end
    return cycles
