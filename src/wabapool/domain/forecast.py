"""The run-out forecast: the pace of the last days, projected against what is left and the cycle's end.

The pace is the mean daily spend of the last `BASIS_DAYS` completed days in
the company's timezone (today is not over, so it is left out): days before
the company existed are not counted, so a company one day old has a basis of
one day (`basis_days`), and a company created today has none yet. Spend is
net of refunds, as the daily roll-up keeps it (a refund counts on its own day).
Days of the previous cycle count like any other: the pace of sending does not
reset with the allowance.

The projection runs from `as_of` at that pace: `available` minor units last
`available / daily_spend` days. It is exact (integer seconds, the mean kept as
the fraction spend / days); `daily_spend` itself is shown rounded down. When
nothing was spent there is no forecast, and when the money lasts until the
cycle ends (and the allowance resets) `runs_out_at` is None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

# SPEC section 4: the mean daily spend of the last 7 days.
BASIS_DAYS = 7
# SPEC section 4: `balance_forecast_low` when the money runs out more than this many days before the cycle ends.
DEFAULT_WARNING_DAYS = 3
# A company may look further ahead, but a month is the longest cycle: more could never fire.
MAX_WARNING_DAYS = 31
_SECONDS_PER_DAY = 86_400


def local_today(at: datetime, timezone: str) -> date:
    if at.tzinfo is None:
        raise ValueError("the forecast needs an aware datetime")
    return at.astimezone(ZoneInfo(timezone)).date()


def basis_window(today: date, first_day: date) -> tuple[date, date] | None:
    """The completed days the pace is taken over (both ends included), or None before the first day is over."""
    first = max(today - timedelta(days=BASIS_DAYS), first_day)
    last = today - timedelta(days=1)
    return (first, last) if first <= last else None


@dataclass(frozen=True, slots=True)
class SpendBasis:
    """What was spent over the basis window, in total and per WABA, and over how many days."""

    days: int
    total_minor: int
    by_waba: Mapping[str, int] = field(default_factory=dict)

    @property
    def daily_spend_minor(self) -> int:
        return self.total_minor // self.days if self.days and self.total_minor > 0 else 0

    def waba_daily_spend_minor(self, waba_id: str) -> int:
        spent = self.by_waba.get(waba_id, 0)
        return spent // self.days if self.days and spent > 0 else 0

    def only(self, waba_ids: Iterable[str]) -> SpendBasis:
        """The basis of some WABAs (those charging one package)."""
        by_waba = {w: self.by_waba[w] for w in waba_ids if w in self.by_waba}
        return SpendBasis(self.days, sum(by_waba.values()), by_waba)


NO_BASIS = SpendBasis(0, 0)


def spend_basis(rows: Iterable[tuple[date, str, int]], *, today: date, first_day: date) -> SpendBasis:
    """The basis from daily roll-up rows (day, waba_id, spent_minor); rows outside the window are ignored."""
    window = basis_window(today, first_day)
    if window is None:
        return NO_BASIS
    first, last = window
    by_waba: dict[str, int] = {}
    for day, waba_id, spent_minor in rows:
        if first <= day <= last:
            by_waba[waba_id] = by_waba.get(waba_id, 0) + spent_minor
    return SpendBasis((last - first).days + 1, sum(by_waba.values()), by_waba)


@dataclass(frozen=True, slots=True)
class Forecast:
    runs_out_at: datetime | None
    daily_spend_minor: int
    basis_days: int


def project(basis: SpendBasis, *, available_minor: int, as_of: datetime, cycle_end: datetime) -> Forecast:
    """When `available` runs out at the basis' pace, if before `cycle_end`; None when it lasts, or nothing was spent."""
    daily = basis.daily_spend_minor
    if basis.total_minor <= 0:
        return Forecast(None, daily, basis.days)
    seconds = max(available_minor, 0) * basis.days * _SECONDS_PER_DAY // basis.total_minor
    # Compared as integers first: a large balance at a small pace lasts longer than a datetime can say.
    if seconds >= (cycle_end - as_of).total_seconds():
        return Forecast(None, daily, basis.days)
    return Forecast(as_of + timedelta(seconds=seconds), daily, basis.days)


def warns(forecast: Forecast, *, cycle_end: datetime, warning_days: int) -> bool:
    """`balance_forecast_low`: the money runs out more than `warning_days` before the cycle ends."""
    runs_out_at = forecast.runs_out_at
    return runs_out_at is not None and runs_out_at < cycle_end - timedelta(days=warning_days)
