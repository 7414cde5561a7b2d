"""The billings/info body, built from the service's BalanceView (read from the cache or the database)."""

from __future__ import annotations

from typing import Any

from wabapool.domain.money import currency_exponent
from wabapool.service.models import BalanceView, PackageFigures, WabaSpend


def balance_object(view: BalanceView | PackageFigures) -> dict[str, Any]:
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


def billing_info(view: BalanceView) -> dict[str, Any]:
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
    }


def _waba(waba: WabaSpend) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "waba_id": waba.waba_id,
        "name": waba.name,
        "spent_this_cycle": waba.spent_this_cycle,
        "spend_cap": None if waba.spend_cap is None else waba.spend_cap.as_json(),
        "cap_spent": waba.cap_spent,
    }
    if waba.balance is not None:
        entry["balance"] = balance_object(waba.balance)
    return entry
