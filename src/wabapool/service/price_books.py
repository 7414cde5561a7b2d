"""The price list as this process last read it, kept until the price list's version moves.

A deduction's group reads the price list's version in its lock statement
(`storage.group_lock`), not the prices: the entries of a deduction code (the
default and every company's own) are read once and kept while the version stays. Every price change raises the
version in its own transaction (`storage.companies.upsert_price`), so a group
that sees the new version reads the new prices, in any process. A database
without the version (None) keeps nothing.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain.pricing import PriceEntry
from wabapool.storage import companies as company_store

# Price-list entries kept, all codes together. The list is small and shared by every company (a default per
# code and market, and the overrides a few companies have); past the bound the book keeps nothing and reads
# per group (a miss costs one read, never a wrong price).
MAX_KEPT_ENTRIES = 200_000


class PriceBooks:
    """Every entry of each deduction code asked for (the defaults and every company's own), per process.

    Kept by code, not by company: a company seen for the first time is priced from what is kept, so a
    spread load over thousands of companies reads the price list once per code, not once per company.
    """

    def __init__(self, *, max_entries: int = MAX_KEPT_ENTRIES) -> None:
        self._version: int | None = None
        self._by_code: dict[str, tuple[PriceEntry, ...]] = {}
        self._kept = 0
        self._max_entries = max_entries

    async def entries(
        self, connection: AsyncConnection, version: int | None, company_ids: Collection[int], codes: Collection[str]
    ) -> list[PriceEntry]:
        """Every entry pricing these codes for these companies, as of `version` (read if not kept)."""
        if version is None or version != self._version:
            self._forget()  # without a version (an older schema) nothing outlives this call
            self._version = version
        missing = [code for code in codes if code not in self._by_code]
        read: dict[str, tuple[PriceEntry, ...]] = {}
        if missing:
            entries = await company_store.prices_for_codes(connection, missing)
            read = {code: tuple(entry for entry in entries if entry.deduction_code == code) for code in missing}
            if self._kept + len(entries) <= self._max_entries:  # past the bound: used for this group only
                self._by_code.update(read)
                self._kept += len(entries)
        companies = set(company_ids)
        return [
            entry
            for code in codes
            for entry in (read[code] if code in read else self._by_code[code])
            if entry.company_id is None or entry.company_id in companies
        ]

    def _forget(self) -> None:
        self._by_code.clear()
        self._kept = 0
