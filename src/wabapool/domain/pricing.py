"""The price list as data: which entry prices a message, by company, market and time."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

_NON_DIGITS = re.compile(r"\D")


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
    digits = _NON_DIGITS.sub("", phone_number)
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


class PriceBook:
    """The price list as it stands at one moment for one company, resolved once per (code, market).

    A group of deductions shares one moment, so each distinct (code, market)
    is resolved once instead of once per message.
    """

    def __init__(self, entries: Iterable[PriceEntry], *, company_id: int, at: datetime) -> None:
        self._company_id = company_id
        self._at = at
        self._by_code: dict[str, list[PriceEntry]] = defaultdict(list)
        for entry in entries:
            if entry.effective_from <= at:
                self._by_code[entry.deduction_code].append(entry)
        self._markets = {code: {e.market for e in found if e.market} for code, found in self._by_code.items()}
        self._resolved: dict[tuple[str, str | None], PriceEntry | None] = {}

    @property
    def at(self) -> datetime:
        """The moment the book stands at: the time of the group's changes."""
        return self._at

    def price(self, deduction_code: str, phone_number: str | None) -> tuple[PriceEntry | None, str | None]:
        """The entry that prices this message, and the market it was priced for."""
        markets = self._markets.get(deduction_code)
        market = market_of(phone_number, markets) if markets else None
        key = (deduction_code, market)
        if key not in self._resolved:
            self._resolved[key] = resolve_price(
                self._by_code.get(deduction_code, ()), company_id=self._company_id, market=market, at=self._at
            )
        return self._resolved[key], market
