"""The package each WABA charges, remembered per process (one look-up fewer on a deduction's path)."""

from __future__ import annotations

from collections import OrderedDict

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

    async def packages(self, connection: AsyncConnection, company_id: int, waba_ids: set[str]) -> dict[str, int | None]:
        """Each known WABA's package (None: it has none); WABAs of no such id in the company are left out."""
        known = self._known.get(company_id)
        if known is not None:
            self._known.move_to_end(company_id)
            if waba_ids <= known.keys():
                return {waba_id: known[waba_id] for waba_id in waba_ids}
        found = await company_store.waba_packages(connection, company_id, waba_ids - (known or {}).keys())
        with_package = {waba_id: package_id for waba_id, package_id in found.items() if package_id is not None}
        if with_package:
            known = self._known.setdefault(company_id, {})
            known.update(with_package)
            while len(self._known) > self._max_companies:
                self._known.popitem(last=False)
        remembered = {waba_id: package_id for waba_id, package_id in (known or {}).items() if waba_id in waba_ids}
        return {**found, **remembered}

    def forget(self, company_id: int) -> None:
        self._known.pop(company_id, None)
