"""The package each WABA charges, remembered per process (one look-up fewer on a deduction's path)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.storage import companies as company_store

# Companies whose WABAs' packages a process remembers: a few hundred bytes each, evicted least recently used.
MAX_REMEMBERED_COMPANIES = 10_000


class WabaPackages:
    """The package each WABA charges, remembered per process.

    Only a package is kept, never "no such WABA" (it may be provisioned since,
    by any process). A WABA changes package only when its package is closed
    (the backfill, or its rollback closing the pool), and a group that finds a
    package closed under its lock forgets the company and asks again
    (`unit_of_work.PackageMovedMeanwhile`), so a remembered package is never charged stale.
    """

    def __init__(self, *, max_companies: int = MAX_REMEMBERED_COMPANIES) -> None:
        self._known: OrderedDict[int, dict[str, int]] = OrderedDict()
        self._max_companies = max_companies

    async def packages(
        self, connection: AsyncConnection, wanted: Mapping[int, set[str]]
    ) -> dict[int, dict[str, int | None]]:
        """By company, each known WABA's package (None: it has none); WABAs of no such id in the company are
        left out. What is not remembered is looked up for every company in one statement."""
        answered: dict[int, dict[str, int | None]] = {}
        missing: dict[int, set[str]] = {}
        for company_id, waba_ids in wanted.items():
            known = self._known.get(company_id, {})
            if known:
                self._known.move_to_end(company_id)
            answered[company_id] = {waba_id: known[waba_id] for waba_id in waba_ids if waba_id in known}
            if len(answered[company_id]) < len(waba_ids):
                missing[company_id] = waba_ids - known.keys()
        if missing:
            for company_id, found in (await company_store.waba_packages(connection, missing)).items():
                answered[company_id].update(found)
                self._remember(company_id, found)
        return answered

    def _remember(self, company_id: int, found: Mapping[str, int | None]) -> None:
        with_package = {waba_id: package_id for waba_id, package_id in found.items() if package_id is not None}
        if not with_package:
            return
        self._known.setdefault(company_id, {}).update(with_package)
        self._known.move_to_end(company_id)
        while len(self._known) > self._max_companies:
            self._known.popitem(last=False)

    def forget(self, company_id: int) -> None:
        self._known.pop(company_id, None)
