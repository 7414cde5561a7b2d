"""The company's balance through the cache: the cache holds the service's plain view, never the API's JSON.

`to_plain` / `from_plain` turn a `BalanceView` into a JSON object and back
(times as ISO 8601, the threshold as its decimal string, money as integers), so
a cached balance and one read from the database are the same view and the API
builds its answer from either the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal

from wabapool.cache import BalanceCache, CachedBalances, CachedValue, Versioned
from wabapool.domain.alerts import TopUpRequest
from wabapool.domain.caps import SpendCap
from wabapool.service.models import BalanceView, PackageFigures, WabaSpend

LoadView = Callable[[int], Awaitable[BalanceView]]


def _figures_plain(figures: BalanceView | PackageFigures) -> CachedValue:
    return {
        "total": figures.total,
        "available": figures.available,
        "allowance": figures.allowance,
        "initial_remaining": figures.initial_remaining,
        "additional_remaining": figures.additional_remaining,
        "postpaid_limit": figures.postpaid_limit,
        "postpaid_used": figures.postpaid_used,
        "cycle_ends_at": figures.cycle_ends_at.isoformat(),
    }


def _figures_of(value: CachedValue) -> PackageFigures:
    return PackageFigures(
        total=value["total"],
        available=value["available"],
        allowance=value["allowance"],
        initial_remaining=value["initial_remaining"],
        additional_remaining=value["additional_remaining"],
        postpaid_limit=value["postpaid_limit"],
        postpaid_used=value["postpaid_used"],
        cycle_ends_at=datetime.fromisoformat(value["cycle_ends_at"]),
    )


def _waba_plain(waba: WabaSpend) -> CachedValue:
    return {
        "waba_id": waba.waba_id,
        "name": waba.name,
        "spent_this_cycle": waba.spent_this_cycle,
        "balance": None if waba.balance is None else _figures_plain(waba.balance),
        "package_id": waba.package_id,
        "spend_cap": None if waba.spend_cap is None else waba.spend_cap.as_json(),
        "cap_spent": waba.cap_spent,
    }


def _waba_of(value: CachedValue) -> WabaSpend:
    balance = value["balance"]
    return WabaSpend(
        waba_id=value["waba_id"],
        name=value["name"],
        spent_this_cycle=value["spent_this_cycle"],
        balance=None if balance is None else _figures_of(balance),
        package_id=value["package_id"],
        spend_cap=_cap_of(value.get("spend_cap")),
        cap_spent=value.get("cap_spent"),
    )


def _cap_of(value: CachedValue | None) -> SpendCap | None:
    """A cached cap (`SpendCap.as_json`); None for none, or for a value cached before caps existed."""
    if value is None:
        return None
    categories = value["categories"]
    return SpendCap(value["amount"], None if categories is None else frozenset(categories), value["warn_percent"])


def to_plain(view: BalanceView) -> CachedValue:
    """The view as a JSON object (what the cache stores)."""
    return {
        **_figures_plain(view),
        "company_id": view.company_id,
        "billing_version": view.billing_version,
        "currency": view.currency,
        "threshold_percent": str(view.threshold_percent),
        "low_balance": view.low_balance,
        "below_zero": view.below_zero,
        "cycle_starts_at": view.cycle_starts_at.isoformat(),
        "wabas": [_waba_plain(waba) for waba in view.wabas],
        "as_of": None if view.as_of is None else view.as_of.isoformat(),
        "timezone": view.timezone,
        "funded_this_cycle": view.funded_this_cycle,
        "version": view.version,
        "top_up_request": _request_plain(view.top_up_request),
        "top_up_request_waba_id": view.top_up_request_waba_id,
    }


def _request_plain(request: TopUpRequest | None) -> CachedValue | None:
    if request is None:
        return None
    return {
        "payment_reference": request.payment_reference,
        "amount_minor": request.amount_minor,
        "requested_at": request.requested_at.isoformat(),
    }


def _request_of(value: CachedValue | None) -> TopUpRequest | None:
    """A cached open request; None for none, or for a value cached before requests existed."""
    if value is None:
        return None
    return TopUpRequest(
        value["payment_reference"], value["amount_minor"], datetime.fromisoformat(value["requested_at"])
    )


def from_plain(value: CachedValue) -> BalanceView:
    """The view back from what the cache stored."""
    figures = _figures_of(value)
    return BalanceView(
        company_id=value["company_id"],
        billing_version=value["billing_version"],
        currency=value["currency"],
        total=figures.total,
        available=figures.available,
        allowance=figures.allowance,
        initial_remaining=figures.initial_remaining,
        additional_remaining=figures.additional_remaining,
        postpaid_limit=figures.postpaid_limit,
        postpaid_used=figures.postpaid_used,
        threshold_percent=Decimal(value["threshold_percent"]),
        low_balance=value["low_balance"],
        below_zero=value["below_zero"],
        cycle_starts_at=datetime.fromisoformat(value["cycle_starts_at"]),
        cycle_ends_at=figures.cycle_ends_at,
        wabas=tuple(_waba_of(waba) for waba in value["wabas"]),
        as_of=None if value["as_of"] is None else datetime.fromisoformat(value["as_of"]),
        timezone=value["timezone"],
        funded_this_cycle=value["funded_this_cycle"],
        version=value["version"],
        top_up_request=_request_of(value.get("top_up_request")),
        top_up_request_waba_id=value.get("top_up_request_waba_id"),
    )


class CachedBalanceViews:
    """Balance reads through the cache (the database behind it), and the hooks that keep it current."""

    def __init__(self, cache: BalanceCache, load: LoadView, *, db_timeout_seconds: float) -> None:
        self._load_view = load
        self.cached = CachedBalances(cache, self._load, db_timeout_seconds=db_timeout_seconds)

    @property
    def cache(self) -> BalanceCache:
        return self.cached.cache

    async def _load(self, company_id: int) -> Versioned:
        view = await self._load_view(company_id)
        return Versioned(to_plain(view), view.version)

    async def get(self, company_id: int) -> tuple[BalanceView, bool]:
        """The balance and whether it is stale; TimeoutError when the database is slow and nothing is cached."""
        value, stale = await self.cached.get(company_id)
        return from_plain(value), stale

    async def write_through(self, company_id: int, view: BalanceView) -> None:
        """After a change commits: its view becomes the cached balance (unless a newer one is there)."""
        await self.cached.write_through(company_id, Versioned(to_plain(view), view.version))

    async def invalidate(self, company_id: int) -> None:
        """Drop the company's cached balance (a change that brought no figures)."""
        await self.cached.invalidate(company_id)

    async def close(self) -> None:
        await self.cached.cache.close()
