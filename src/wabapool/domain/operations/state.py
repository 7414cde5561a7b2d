"""A pool's state and the change an operation returns; the ceiling on money every change respects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from wabapool.domain import alerts, thresholds
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.events import DomainEvent
from wabapool.domain.limits import AMOUNT_MAX_MINOR
from wabapool.domain.pool import Buckets, Move, Portion


@dataclass(frozen=True, slots=True)
class PoolState:
    company_id: int
    buckets: Buckets
    cycle_start: datetime
    # Kept, not derived: a change of anchor day or timezone takes effect only at this end (see `cycle`).
    cycle_end: datetime
    anchor_day: int
    timezone: str
    funded_base_minor: int
    low_balance_armed: bool = True
    below_zero_cycle_start: datetime | None = None
    threshold_percent: Decimal | None = None
    # The WABA a package of its own belongs to (v2); None for the company's shared pool.
    waba_id: str | None = None
    # The company's own alerts and auto-recharge (domain.alerts), and where this package stands with them:
    # the alerts fired in their current crossing, the open top-up request, the requests raised this cycle.
    alerting: alerts.Alerting = alerts.NO_ALERTING
    alerts_fired: frozenset[str] = frozenset()
    top_up_request: alerts.TopUpRequest | None = None
    top_ups_requested: int = 0

    @property
    def scope(self) -> str:
        """Whose money this is in event dedup keys: the company's pool, or one WABA's package of a company."""
        return str(self.company_id) if self.waba_id is None else f"{self.company_id}:{self.waba_id}"

    @property
    def cycle_label(self) -> str:
        """The cycle's local start date, e.g. `2026-11-01`: part of event dedup keys."""
        return self.cycle_start.astimezone(ZoneInfo(self.timezone)).date().isoformat()

    @property
    def is_low(self) -> bool:
        return thresholds.is_low(
            self.buckets,
            funded_base_minor=self.funded_base_minor,
            threshold_percent=self.threshold_percent,
        )

    @property
    def is_below_zero(self) -> bool:
        return self.buckets.total < 0


@dataclass(frozen=True, slots=True)
class Change:
    state: PoolState
    moves: list[Move] = field(default_factory=list)
    events: list[DomainEvent] = field(default_factory=list)
    portions: tuple[Portion, ...] = ()


def figures(state: PoolState) -> dict[str, object]:
    buckets = state.buckets
    return {
        "company_id": state.company_id,
        **({} if state.waba_id is None else {"waba_id": state.waba_id}),
        "cycle": state.cycle_label,
        "total": buckets.total,
        "available": buckets.available,
        "initial_remaining": buckets.initial_remaining,
        "additional_remaining": buckets.additional_remaining,
        "postpaid_used": buckets.postpaid_used,
        "postpaid_limit": buckets.postpaid_limit,
    }


def check_ceiling(buckets: Buckets) -> None:
    """Refuse a change that would take any figure of the pool past the ceiling on money."""
    if buckets.largest_figure > AMOUNT_MAX_MINOR:
        raise BillingError(
            Rejection.AMOUNT_TOO_LARGE,
            f"the pool's figures must stay at or under {AMOUNT_MAX_MINOR} minor units",
            {"max_minor": AMOUNT_MAX_MINOR},
        )


def check_company_ceiling(packages: Sequence[Buckets]) -> None:
    """Refuse a change that would take a company's summed figures past the ceiling on money.

    A company with several packages (v2: one per WABA) shows their sum in `billings/info`; each figure of
    that sum (total, available, allowance, the credit line) must stay exact in a browser too.
    """
    summed = max(
        sum(b.available for b in packages),
        sum(b.initial_allowance for b in packages),
        sum(b.initial_used for b in packages),
        sum(b.postpaid_limit for b in packages),
    )
    if summed > AMOUNT_MAX_MINOR:
        raise BillingError(
            Rejection.AMOUNT_TOO_LARGE,
            f"the company's figures, summed over its packages, must stay at or under {AMOUNT_MAX_MINOR} minor units",
            {"max_minor": AMOUNT_MAX_MINOR},
        )
