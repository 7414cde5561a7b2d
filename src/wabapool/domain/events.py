"""Events a change raises; written to the outbox in the change's transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from wabapool.domain.json_types import JSONObject


class EventType(StrEnum):
    BALANCE_LOW = "balance_low"
    BALANCE_BELOW_ZERO = "balance_below_zero"
    BALANCE_TOPPED_UP = "balance_topped_up"
    CYCLE_RESET = "cycle_reset"
    POSTPAID_SETTLED = "postpaid_settled"
    BALANCE_ALERT = "balance_alert"
    TOP_UP_REQUESTED = "top_up_requested"
    TOP_UP_REQUEST_EXPIRED = "top_up_request_expired"
    BALANCE_FORECAST_LOW = "balance_forecast_low"
    # A WABA's spending cap (domain.caps): each at most once per WABA and cycle.
    WABA_CAP_WARNING = "waba_cap_warning"
    WABA_CAP_REACHED = "waba_cap_reached"


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """`dedup_key`, when set, makes the outbox refuse a second copy."""

    event_type: EventType
    payload: JSONObject = field(default_factory=dict)
    dedup_key: str | None = None
