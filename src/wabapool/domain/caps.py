"""Spending caps per WABA and cycle (SPEC rule 3.11): pure rules, no I/O.

A cap limits what one WABA may spend from the shared pool in one billing
cycle, optionally only in some message categories (say `marketing`, so
one-time passwords keep flowing when the marketing budget is spent). Its
*capped spend* is what the WABA spent this cycle in the categories the cap
covers, net of refunds; the cycle reset zeroes it (a new cycle starts a new
spend row, so nothing has to be written at the reset).

The checks run in the deduction's own decision, before the pool's: a
deduction whose capped spend plus its amount would pass the cap is refused
with `waba_cap_exceeded` and takes nothing, whatever the pool holds. Free
messages (amount 0) always pass. A cap lowered under what was spent moves no
money; it only refuses further capped spend.

Events, each at most once per WABA and cycle (the dedup key says so too):
`waba_cap_warning` when the capped spend reaches `warn_percent` of the cap,
`waba_cap_reached` on the first refusal, or when the spend lands exactly on
the cap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.events import DomainEvent, EventType
from wabapool.domain.limits import AMOUNT_MAX_MINOR

# Meta's message categories (SPEC rule 3.10): what a cap's `categories` may name.
CAP_CATEGORIES = ("marketing", "utility", "authentication", "authentication_international", "service")
DEFAULT_WARN_PERCENT = 80


@dataclass(frozen=True, slots=True)
class SpendCap:
    """A WABA's cap: `amount_minor` per cycle over `categories` (None: every category)."""

    amount_minor: int
    categories: frozenset[str] | None = None
    warn_percent: int = DEFAULT_WARN_PERCENT

    def covers(self, category: str | None) -> bool:
        """Whether a message of this category counts against the cap.

        A message that names no category counts against every cap: a cap is a
        safety limit, and a message that does not say what it is cannot prove
        it is outside one.
        """
        return self.categories is None or category is None or category in self.categories

    def as_json(self) -> dict[str, object]:
        """The wire and storage shape: `{amount, categories (sorted, or null), warn_percent}`."""
        return {
            "amount": self.amount_minor,
            "categories": None if self.categories is None else sorted(self.categories),
            "warn_percent": self.warn_percent,
        }


def make_cap(amount_minor: object, categories: Iterable[object] | None, warn_percent: object | None) -> SpendCap:
    """A checked cap from request values; `invalid_request` (or `amount_too_large`) naming the field otherwise."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor < 0:
        raise BillingError(
            Rejection.INVALID_REQUEST, "amount is an integer of minor units, 0 or more", {"field": "spend_cap.amount"}
        )
    if amount_minor > AMOUNT_MAX_MINOR:
        raise BillingError(
            Rejection.AMOUNT_TOO_LARGE,
            f"amount must be at most {AMOUNT_MAX_MINOR} minor units",
            {"field": "spend_cap.amount", "max_minor": AMOUNT_MAX_MINOR},
        )
    chosen: frozenset[str] | None = None
    if categories is not None:
        named = list(categories)
        unknown = [c for c in named if c not in CAP_CATEGORIES]
        if not named or unknown or len(set(named)) != len(named):
            raise BillingError(
                Rejection.INVALID_REQUEST,
                "categories is a non-empty list of distinct message categories (or absent for all)",
                {"field": "spend_cap.categories", "allowed": list(CAP_CATEGORIES)},
            )
        chosen = frozenset(str(c) for c in named)
    percent = DEFAULT_WARN_PERCENT if warn_percent is None else warn_percent
    if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
        raise BillingError(
            Rejection.INVALID_REQUEST, "warn_percent is an integer 1..100", {"field": "spend_cap.warn_percent"}
        )
    return SpendCap(amount_minor, chosen, percent)


@dataclass(frozen=True, slots=True)
class CapState:
    """One WABA's cap as the current cycle stands: its capped spend and which of its events were raised."""

    waba_id: str
    cap: SpendCap
    spent_minor: int = 0
    warned: bool = False
    reached: bool = False


def capped_part(cap: SpendCap | None, category: str | None, amount_minor: int) -> int:
    """What of a deduction (or of its refund) counts against the cap."""
    return amount_minor if cap is not None and cap.covers(category) else 0


def refusal(state: CapState, category: str | None, amount_minor: int) -> BillingError | None:
    """`waba_cap_exceeded` if this deduction would take the capped spend past the cap; None if it may go on."""
    cap = state.cap
    if amount_minor == 0 or not cap.covers(category) or state.spent_minor + amount_minor <= cap.amount_minor:
        return None
    return BillingError(
        Rejection.WABA_CAP_EXCEEDED,
        "this deduction would take the WABA past its spending cap for this cycle",
        {
            "waba_id": state.waba_id,
            "cap": cap.amount_minor,
            "spent": state.spent_minor,
            "categories": None if cap.categories is None else sorted(cap.categories),
        },
    )


def warns(cap: SpendCap, spent_minor: int) -> bool:
    """Whether the capped spend has reached the warning share of the cap (integers only)."""
    return spent_minor * 100 >= cap.warn_percent * cap.amount_minor


class CapRun:
    """The caps of a group's WABAs while its deductions are decided one after another.

    `admit` before the pool charges a deduction, `spent` once it has: a
    deduction the pool refuses never counts against the cap. The states and
    the events raised are read at the end (`states`, `events`).
    """

    def __init__(self, states: Mapping[str, CapState], *, company_id: int, cycle_label: str) -> None:
        self._initial = dict(states)
        self._states = dict(states)
        self._company_id = company_id
        self._cycle_label = cycle_label
        self.events: list[DomainEvent] = []

    @property
    def states(self) -> dict[str, CapState]:
        return self._states

    def raised(self) -> list[CapState]:
        """The caps whose warning or reach this run raised: what must be remembered for the rest of the cycle."""
        return [
            state
            for waba_id, state in self._states.items()
            if (state.warned, state.reached) != (self._initial[waba_id].warned, self._initial[waba_id].reached)
        ]

    def admit(self, waba_id: str, category: str | None, amount_minor: int) -> BillingError | None:
        """None if the WABA's cap (if any) lets this deduction through; else the refusal, noted once per cycle."""
        state = self._states.get(waba_id)
        if state is None:
            return None
        error = refusal(state, category, amount_minor)
        if error is not None and not state.reached:
            self._states[waba_id] = state = replace(state, reached=True)
            self.events.append(self._event(EventType.WABA_CAP_REACHED, state))
        return error

    def spent(self, waba_id: str, category: str | None, amount_minor: int) -> None:
        """Count a charged deduction against the WABA's cap; raise the warning and the reach once per cycle."""
        state = self._states.get(waba_id)
        part = capped_part(None if state is None else state.cap, category, amount_minor)
        if state is None or part == 0:
            return
        state = replace(state, spent_minor=state.spent_minor + part)
        if not state.warned and warns(state.cap, state.spent_minor):
            state = replace(state, warned=True)
            self.events.append(self._event(EventType.WABA_CAP_WARNING, state))
        if not state.reached and state.spent_minor >= state.cap.amount_minor:
            state = replace(state, reached=True)
            self.events.append(self._event(EventType.WABA_CAP_REACHED, state))
        self._states[waba_id] = state

    def _event(self, event_type: EventType, state: CapState) -> DomainEvent:
        return cap_event(event_type, state, company_id=self._company_id, cycle_label=self._cycle_label)


def cap_event(event_type: EventType, state: CapState, *, company_id: int, cycle_label: str) -> DomainEvent:
    """A cap event: the WABA, its cap and capped spend; deduplicated per WABA and cycle."""
    cap = state.cap
    return DomainEvent(
        event_type,
        {
            "company_id": company_id,
            "waba_id": state.waba_id,
            "cycle": cycle_label,
            "cap": cap.amount_minor,
            "spent": state.spent_minor,
            "categories": None if cap.categories is None else sorted(cap.categories),
            "warn_percent": cap.warn_percent,
        },
        dedup_key=f"{company_id}:{state.waba_id}:{cycle_label}",
    )
