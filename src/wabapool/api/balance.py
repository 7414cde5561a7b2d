"""The billings/info body, built from the service's BalanceView (read from the cache or the database)."""

from __future__ import annotations

from datetime import datetime
from typing import NotRequired, TypedDict

from wabapool.domain import forecast
from wabapool.domain.forecast import SpendBasis
from wabapool.domain.money import currency_exponent
from wabapool.service.models import BalanceView, PackageFigures, WabaSpend


class WabiBody(TypedDict):
    allowance: int
    remaining: int
    resets_at: str


class BalanceBody(TypedDict):
    total: int
    available: int
    wabi: WabiBody
    additional: dict[str, int]
    postpaid: dict[str, int]


class CycleBody(TypedDict):
    starts_at: str
    ends_at: str


class WabaBody(TypedDict):
    waba_id: str
    name: str
    spent_this_cycle: int
    spend_cap: NotRequired[dict[str, object] | None]  # left out for readers without the permission
    cap_spent: NotRequired[int | None]
    balance: NotRequired[BalanceBody]
    daily_spend: NotRequired[int]


class TopUpRequestBody(TypedDict):
    payment_reference: str
    amount: int
    requested_at: str
    expires_at: str
    waba_id: str | None


class ForecastBody(TypedDict):
    runs_out_at: str | None
    daily_spend: int
    basis_days: int


class BillingInfoBody(TypedDict):
    """The JSON of `billings/info` (the wire model is `schemas.billing_info.BillingInfoOut`)."""

    billing_version: str
    currency: str
    currency_exponent: int
    balance: BalanceBody
    threshold_percent: str
    low_balance: bool
    below_zero: bool
    cycle: CycleBody
    wabas: list[WabaBody]
    as_of: str | None
    timezone: str | None
    funded_this_cycle: int | None
    top_up_request: TopUpRequestBody | None
    forecast: NotRequired[ForecastBody]


def balance_object(view: BalanceView | PackageFigures) -> BalanceBody:
    """The `balance` object: of the company (its pool, or for v2 the sum of its packages), or of one package."""
    return {
        "total": view.total,
        "available": view.available,
        "wabi": {
            "allowance": view.allowance,
            "remaining": view.initial_remaining,
            "resets_at": view.cycle_ends_at.isoformat(),
        },
        "additional": {"remaining": view.additional_remaining},
        "postpaid": {"limit": view.postpaid_limit, "used": view.postpaid_used},
    }


def billing_info(view: BalanceView) -> BillingInfoBody:
    """Everything but `stale`, which the reader adds."""
    return {
        "billing_version": view.billing_version,
        "currency": view.currency,
        "currency_exponent": currency_exponent(view.currency),
        "balance": balance_object(view),
        "threshold_percent": str(view.threshold_percent),
        "low_balance": view.low_balance,
        "below_zero": view.below_zero,
        "cycle": {"starts_at": view.cycle_starts_at.isoformat(), "ends_at": view.cycle_ends_at.isoformat()},
        "wabas": [_waba(w) for w in view.wabas],
        "as_of": view.as_of.isoformat() if view.as_of else None,
        "timezone": view.timezone,
        "funded_this_cycle": view.funded_this_cycle,
        "top_up_request": _request(view),
    }


def _request(view: BalanceView) -> TopUpRequestBody | None:
    request = view.top_up_request
    if request is None:
        return None
    return {
        "payment_reference": request.payment_reference,
        "amount": request.amount_minor,
        "requested_at": request.requested_at.isoformat(),
        "expires_at": request.expires_at.isoformat(),
        "waba_id": view.top_up_request_waba_id,
    }


def with_forecast(body: BillingInfoBody, basis: SpendBasis, *, as_of: datetime) -> BillingInfoBody:
    """The body with the run-out forecast and each WABA's daily spend, projected from `as_of` (its figures' time).

    The basis changes once a day, the figures with every change: the cached
    body carries the figures, the basis comes from `SpendBases` (once a day per
    company), and this puts them together on every read, with no I/O.
    """
    found = forecast.project(
        basis,
        available_minor=body["balance"]["available"],
        as_of=as_of,
        cycle_end=datetime.fromisoformat(body["cycle"]["ends_at"]),
    )
    return {
        **body,
        "as_of": as_of.isoformat(),
        "wabas": [{**waba, "daily_spend": basis.waba_daily_spend_minor(waba["waba_id"])} for waba in body["wabas"]],
        "forecast": {
            "runs_out_at": None if found.runs_out_at is None else found.runs_out_at.isoformat(),
            "daily_spend": found.daily_spend_minor,
            "basis_days": found.basis_days,
        },
    }


def _waba(waba: WabaSpend) -> WabaBody:
    entry: WabaBody = {
        "waba_id": waba.waba_id,
        "name": waba.name,
        "spent_this_cycle": waba.spent_this_cycle,
        "spend_cap": None if waba.spend_cap is None else waba.spend_cap.as_json(),
        "cap_spent": waba.cap_spent,
    }
    if waba.balance is not None:
        entry["balance"] = balance_object(waba.balance)
    return entry
