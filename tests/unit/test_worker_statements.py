"""Cycle statements from data: the closed cycle's figures, and idle cycles caught up in one go."""

from __future__ import annotations

import pytest

from tests.unit.builders import DECEMBER_START, NOVEMBER_START, pool_state, utc
from wabapool.domain.statements import CycleActivity, Figures, closed_by

JANUARY_START = utc(2026, 12, 31, 17, 0)
FEBRUARY_START = utc(2027, 1, 31, 17, 0)


def test_nothing_is_closed_while_the_cycle_is_current() -> None:
    assert closed_by(pool_state(), NOVEMBER_START, CycleActivity({}, {}, 0)) == []


def test_the_closed_cycle_opens_with_its_closing_less_what_changed_during_it() -> None:
    stored = pool_state(initial=0, additional=150, postpaid_used=120)
    activity = CycleActivity({"initial": -1000, "additional": 150, "postpaid": 120}, {"w1": 900, "w2": 220, "w3": 0}, 7)
    (statement,) = closed_by(stored, DECEMBER_START, activity)
    assert (statement.cycle_start, statement.cycle_end) == (NOVEMBER_START, DECEMBER_START)
    assert statement.opening == Figures(1000, 0, 0) and statement.closing == Figures(0, 150, 120)
    assert statement.closing.total == 30 and statement.opening.total == 1000
    assert statement.spent_by_waba == {"w1": 900, "w2": 220} and statement.spent_minor == 1120
    assert statement.deductions_count == 7


def test_cycles_nobody_touched_get_a_statement_each_with_the_allowance_granted_and_nothing_spent() -> None:
    stored = pool_state(initial=400, additional=50)
    first, december, january = closed_by(stored, FEBRUARY_START, CycleActivity({"initial": -600}, {"w1": 600}, 3))
    assert first.closing == Figures(400, 50, 0) and first.spent_minor == 600
    assert (december.cycle_start, december.cycle_end) == (DECEMBER_START, JANUARY_START)
    assert december.opening == december.closing == Figures(1000, 50, 0) and december.deductions_count == 0
    assert (january.cycle_start, january.cycle_end) == (JANUARY_START, FEBRUARY_START)


def test_a_new_cycle_start_off_the_boundaries_is_refused() -> None:
    with pytest.raises(ValueError, match="boundary"):
        closed_by(pool_state(), utc(2026, 12, 5), CycleActivity({}, {}, 0))
