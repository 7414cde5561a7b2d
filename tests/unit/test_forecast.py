"""The run-out forecast on fixed histories, each figure checked against a hand computation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from wabapool.domain import forecast

# 10:00 in Jakarta (UTC+7) on 10 Nov 2026: the basis is 3..9 Nov.
AS_OF = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)
TODAY = date(2026, 11, 10)
CYCLE_END = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # 1 Dec 00:00 in Jakarta
LONG_AGO = date(2026, 1, 1)


def days_back(*amounts: int, waba: str = "w1") -> list[tuple[date, str, int]]:
    """Roll-up rows: the first amount yesterday, the next the day before, ..."""
    return [(TODAY - timedelta(days=n + 1), waba, amount) for n, amount in enumerate(amounts)]


def test_steady_spend_runs_out_when_available_over_the_daily_mean_has_passed() -> None:
    basis = forecast.spend_basis(days_back(*[1_000] * 7), today=TODAY, first_day=LONG_AGO)
    assert (basis.days, basis.total_minor, basis.daily_spend_minor) == (7, 7_000, 1_000)
    found = forecast.project(basis, available_minor=5_500, as_of=AS_OF, cycle_end=CYCLE_END)
    # 5,500 / 1,000 a day = 5.5 days = 5 days 12 hours after 10 Nov 03:00 UTC.
    assert found == forecast.Forecast(datetime(2026, 11, 15, 15, 0, tzinfo=UTC), 1_000, 7)


def test_a_spike_yesterday_counts_as_one_seventh_of_the_pace() -> None:
    basis = forecast.spend_basis(days_back(71_000, *[500] * 6), today=TODAY, first_day=LONG_AGO)
    # (71,000 + 6 x 500) / 7 = 74,000 / 7 = 10,571.43 a day; shown rounded down.
    assert basis.daily_spend_minor == 10_571
    found = forecast.project(basis, available_minor=74_000, as_of=AS_OF, cycle_end=CYCLE_END)
    assert found.runs_out_at == AS_OF + timedelta(days=7)  # exact: the fraction, not the rounded mean


def test_a_company_one_day_old_takes_its_pace_from_that_day() -> None:
    basis = forecast.spend_basis(days_back(2_400), today=TODAY, first_day=TODAY - timedelta(days=1))
    assert (basis.days, basis.daily_spend_minor) == (1, 2_400)
    found = forecast.project(basis, available_minor=600, as_of=AS_OF, cycle_end=CYCLE_END)
    assert found.runs_out_at == AS_OF + timedelta(hours=6)
    assert found.basis_days == 1


def test_a_company_created_today_has_no_basis_yet() -> None:
    basis = forecast.spend_basis([(TODAY, "w1", 5_000)], today=TODAY, first_day=TODAY)
    assert basis == forecast.NO_BASIS
    assert forecast.project(basis, available_minor=1, as_of=AS_OF, cycle_end=CYCLE_END).runs_out_at is None


def test_a_zero_spend_week_gives_no_forecast() -> None:
    basis = forecast.spend_basis(days_back(*[0] * 7), today=TODAY, first_day=LONG_AGO)
    found = forecast.project(basis, available_minor=10, as_of=AS_OF, cycle_end=CYCLE_END)
    assert found == forecast.Forecast(None, 0, 7)


def test_refunds_larger_than_spend_give_no_forecast() -> None:
    basis = forecast.spend_basis(days_back(100, -300), today=TODAY, first_day=LONG_AGO)
    assert forecast.project(basis, available_minor=10, as_of=AS_OF, cycle_end=CYCLE_END).runs_out_at is None


def test_money_that_lasts_past_the_cycle_end_has_no_run_out_time() -> None:
    basis = forecast.spend_basis(days_back(*[1_000] * 7), today=TODAY, first_day=LONG_AGO)
    # 20 days 14 hours left in the cycle; 21 days of money.
    assert forecast.project(basis, available_minor=21_000, as_of=AS_OF, cycle_end=CYCLE_END).runs_out_at is None
    huge = forecast.project(basis, available_minor=2**53 - 1, as_of=AS_OF, cycle_end=CYCLE_END)
    assert huge.runs_out_at is None


def test_the_basis_days_are_local_days_across_a_timezone_and_a_cycle_boundary() -> None:
    # Tokyo is UTC+9: 16:30 UTC on 2 Dec is 01:30 on 3 Dec there.
    as_of = datetime(2026, 12, 2, 16, 30, tzinfo=UTC)
    today = forecast.local_today(as_of, "Asia/Tokyo")
    assert today == date(2026, 12, 3)  # in UTC it is still 2 Dec
    # The cycle began 1 Dec (Tokyo); the basis reaches back into November: 26 Nov .. 2 Dec.
    rows = [(date(2026, 11, 25), "w1", 99_999)]  # outside the window
    rows += [(date(2026, 11, 26) + timedelta(days=n), "w1", 700) for n in range(5)]  # 26..30 Nov
    rows += [(date(2026, 12, 1), "w1", 1_400), (date(2026, 12, 2), "w2", 1_400)]
    rows += [(date(2026, 12, 3), "w1", 50_000)]  # today, not over: left out
    basis = forecast.spend_basis(rows, today=today, first_day=LONG_AGO)
    assert (basis.days, basis.total_minor) == (7, 3_500 + 2_800)
    assert basis.daily_spend_minor == 900
    assert basis.waba_daily_spend_minor("w1") == (3_500 + 1_400) // 7
    assert basis.waba_daily_spend_minor("w2") == 200
    cycle_end = datetime(2026, 12, 31, 15, 0, tzinfo=UTC)  # 1 Jan 00:00 Tokyo
    found = forecast.project(basis, available_minor=9_000, as_of=as_of, cycle_end=cycle_end)
    assert found.runs_out_at == as_of + timedelta(days=10)  # 9,000 / 900 a day


def test_the_warning_holds_only_when_the_money_runs_out_more_than_the_warning_days_before_the_cycle_ends() -> None:
    basis = forecast.spend_basis(days_back(*[1_000] * 7), today=TODAY, first_day=LONG_AGO)
    cycle_end = AS_OF + timedelta(days=10)
    early = forecast.project(basis, available_minor=6_999, as_of=AS_OF, cycle_end=cycle_end)
    assert forecast.warns(early, cycle_end=cycle_end, warning_days=3)
    at_edge = forecast.project(basis, available_minor=7_000, as_of=AS_OF, cycle_end=cycle_end)
    assert not forecast.warns(at_edge, cycle_end=cycle_end, warning_days=3)
    assert not forecast.warns(forecast.Forecast(None, 0, 0), cycle_end=cycle_end, warning_days=3)
