"""Cycle statements, pure: what each closed cycle opened and closed with, and what it spent.

A statement is built when a cycle is closed, in the transaction that resets the pool into the next
one (by the worker, or lazily by a deduction or refund). Figures are the buckets' stored values
(remaining for initial/additional, used for postpaid). The closing figures are the pool as it stood
at the end of the cycle; the opening figures are the closing ones less every ledger change made
during the cycle after its reset (so a statement always equals the ledger). Cycles a pool skipped
entirely (no activity: they were caught up in one go) get a statement too, opening equal to closing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from wabapool.domain import cycle, operations
from wabapool.domain.limits import MAX_CATCH_UP_CYCLES
from wabapool.domain.pool import Buckets, QuotaType


@dataclass(frozen=True, slots=True)
class Figures:
    """Stored bucket values at one instant."""

    initial_remaining: int
    additional_remaining: int
    postpaid_used: int

    @classmethod
    def of(cls, buckets: Buckets) -> Figures:
        return cls(buckets.initial_remaining, buckets.additional_remaining, buckets.postpaid_used)

    @property
    def total(self) -> int:
        return self.initial_remaining + self.additional_remaining - self.postpaid_used

    def less(self, changes: Mapping[str, int]) -> Figures:
        """These figures before the given stored-value changes per quota type."""
        return Figures(
            self.initial_remaining - changes.get(QuotaType.INITIAL.value, 0),
            self.additional_remaining - changes.get(QuotaType.ADDITIONAL.value, 0),
            self.postpaid_used - changes.get(QuotaType.POSTPAID.value, 0),
        )


@dataclass(frozen=True, slots=True)
class Statement:
    """One closed cycle of one pool."""

    company_id: int
    cycle_start: datetime
    cycle_end: datetime
    allowance_minor: int
    postpaid_limit_minor: int
    opening: Figures
    closing: Figures
    spent_by_waba: dict[str, int] = field(default_factory=dict)
    deductions_count: int = 0

    @property
    def spent_minor(self) -> int:
        return sum(self.spent_by_waba.values())


@dataclass(frozen=True, slots=True)
class CycleActivity:
    """What the ledger says about the pool's stored (last active) cycle."""

    bucket_changes: Mapping[str, int]  # stored-value change per quota type, resets excluded
    spent_by_waba: Mapping[str, int]
    deductions_count: int


def closed_by(stored: operations.PoolState, new_cycle_start: datetime, activity: CycleActivity) -> list[Statement]:
    """Statements of every cycle from the stored one up to (not including) the one starting at new_cycle_start.

    The stored cycle ends where the pool kept its end; the idle ones after it follow the pool's terms
    from there (`cycle.missed_cycles`), exactly as the catch-up that closes them.
    """
    if new_cycle_start <= stored.cycle_start:
        return []
    missed = cycle.missed_cycles(
        stored.cycle_end,
        new_cycle_start,
        anchor_day=stored.anchor_day,
        timezone=stored.timezone,
        limit=MAX_CATCH_UP_CYCLES,
    )
    if not missed or missed[-1][0] != new_cycle_start:
        raise ValueError("the new cycle start is not a cycle boundary of the stored cycle")
    closing = Figures.of(stored.buckets)
    statements = [
        Statement(
            company_id=stored.company_id,
            cycle_start=stored.cycle_start,
            cycle_end=stored.cycle_end,
            allowance_minor=stored.buckets.initial_allowance,
            postpaid_limit_minor=stored.buckets.postpaid_limit,
            opening=closing.less(activity.bucket_changes),
            closing=closing,
            spent_by_waba={waba: amount for waba, amount in activity.spent_by_waba.items() if amount},
            deductions_count=activity.deductions_count,
        )
    ]
    for start, end in missed[:-1]:
        idle = operations.catch_up(stored, start).state
        figures = Figures.of(idle.buckets)
        statements.append(
            Statement(
                company_id=stored.company_id,
                cycle_start=start,
                cycle_end=end,
                allowance_minor=idle.buckets.initial_allowance,
                postpaid_limit_minor=idle.buckets.postpaid_limit,
                opening=figures,
                closing=figures,
            )
        )
    return statements
