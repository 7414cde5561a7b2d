"""The price list as this process last read it, kept until the price list's version moves.

A deduction's group reads the price list's version in its lock statement
(`storage.group_lock`), not the prices: the entries for a (company, code) are
read once and kept while the version stays. Every price change raises the
version in its own transaction (`storage.companies.upsert_price`), so a group
that sees the new version reads the new prices, in any process. A database
without the version (None) keeps nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain.pricing import PriceEntry
from wabapool.storage import companies as company_store

# (company, deduction code) pairs kept: a platform's companies times the few codes each sends (marketing,
# utility, ...). Past it the least recently used pair goes; a pair is about 0.5 KiB, so 200k is ~100 MiB at
# worst, and the price list itself is small (a miss costs one read, never a wrong price).
MAX_PRICED_PAIRS = 200_000

_Pair = tuple[int, str]


class PriceBooks:
    """Each (company, deduction code)'s price entries (the defaults and the company's own), per process."""

    def __init__(self, *, max_pairs: int = MAX_PRICED_PAIRS) -> None:
        self._version: int | None = None
        self._entries: OrderedDict[_Pair, tuple[PriceEntry, ...]] = OrderedDict()
        self._max_pairs = max_pairs

    async def entries(
        self, connection: AsyncConnection, version: int | None, company_ids: Collection[int], codes: Collection[str]
    ) -> list[PriceEntry]:
        """Every entry pricing these codes for these companies, as of `version` (read if not kept)."""
        if version is None or version != self._version:
            self._entries.clear()  # without a version (an older schema) nothing outlives this call
            self._version = version
        wanted = [(company_id, code) for company_id in company_ids for code in codes]
        missing = [pair for pair in wanted if pair not in self._entries]
        if missing:
            await self._read(connection, {company for company, _ in missing}, {code for _, code in missing})
        found: dict[PriceEntry, None] = {}  # a default entry is in every company's pairs: once
        for pair in wanted:
            entries = self._entries.get(pair)
            if entries is None:  # evicted by this very read (a group larger than the bound): read it alone
                return await company_store.prices_for_companies(connection, company_ids, codes)
            self._entries.move_to_end(pair)
            found.update(dict.fromkeys(entries))
        return list(found)

    async def _read(self, connection: AsyncConnection, company_ids: set[int], codes: set[str]) -> None:
        """One read for every missing pair (a pair with no entry is kept too: its code is not priced)."""
        read = await company_store.prices_for_companies(connection, company_ids, codes)
        for company_id in company_ids:
            for code in codes:
                self._entries[(company_id, code)] = tuple(
                    e for e in read if e.deduction_code == code and e.company_id in (None, company_id)
                )
        while len(self._entries) > self._max_pairs:
            self._entries.popitem(last=False)
