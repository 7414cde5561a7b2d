"""The price list as data: which entry prices a message, by company, market and time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PriceEntry:
    deduction_code: str
    unit_price_minor: int
    effective_from: datetime
    company_id: int | None = None
    market: str | None = None


def market_of(phone_number: str | None, markets: Iterable[str]) -> str | None:
    """The longest known calling code the number starts with (`+62 812…` → `62`)."""
    if not phone_number:
        return None
    digits = "".join(ch for ch in phone_number if ch.isdigit())
    matches = [market for market in markets if digits.startswith(market)]
    return max(matches, key=len) if matches else None


def resolve_price(
    entries: Iterable[PriceEntry], *, company_id: int, market: str | None, at: datetime
) -> PriceEntry | None:
    """The entry in force at `at`: company over default, market over any market, newest first."""
    best: PriceEntry | None = None
    best_rank: tuple[int, int, datetime] | None = None
    for entry in entries:
        if entry.effective_from > at:
            continue
        if entry.company_id is not None and entry.company_id != company_id:
            continue
        if entry.market is not None and entry.market != market:
            continue
        rank = (entry.company_id is not None, entry.market is not None, entry.effective_from)
        if best_rank is None or rank > best_rank:
            best, best_rank = entry, (int(rank[0]), int(rank[1]), rank[2])
    return best
