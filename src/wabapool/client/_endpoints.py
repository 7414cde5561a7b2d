"""Each method of the API as a `Call`: verb, path, body and how to read the answer.

The sync and async clients only differ in how they send a Call, so every
endpoint is written once, here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Literal, TypeVar
from urllib.parse import quote

from wabapool.client import _wire
from wabapool.client._models import (
    Balance,
    BatchResult,
    Deduction,
    DeductionItem,
    PackageTerms,
    Payment,
    Refund,
)
from wabapool.domain.json_types import JSONObject, JSONValue
from wabapool.domain.limits import BATCH_MAX_ITEMS

ResultT = TypeVar("ResultT")

DEFAULT_PREFIX = "/iag/v1"


@dataclass(frozen=True, slots=True)
class Call(Generic[ResultT]):
    """One request to send (and to send again, byte for byte, on a retry)."""

    method: Literal["GET", "POST", "PUT"]
    path: str
    parse: Callable[[object], ResultT]
    body: dict[str, object] | None = None


def _segment(value: object) -> str:
    return quote(str(value), safe="")


def _company_path(company_id: int) -> str:
    return _segment(_wire.integer("company_id", company_id))


class Endpoints:
    """The routes under one prefix (`/iag/v1`, or the gateway's rewrite)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        prefix = prefix.rstrip("/")
        if prefix and not prefix.startswith("/"):
            raise ValueError("prefix must start with '/'")
        self.prefix = prefix

    def deduct(self, item: DeductionItem) -> Call[Deduction]:
        body = _wire.deduction_body(item)
        return Call("POST", f"{self.prefix}/quota-managements/deduction", _wire.parse_deduction, body)

    def deduct_batch(self, items: Iterable[DeductionItem | Mapping[str, JSONValue]]) -> Call[BatchResult]:
        bodies = [_wire.deduction_body(_wire.deduction_item(item)) for item in items]
        if not 1 <= len(bodies) <= BATCH_MAX_ITEMS:
            raise ValueError(f"a batch holds 1 to {BATCH_MAX_ITEMS} deductions, got {len(bodies)}")
        return Call("POST", f"{self.prefix}/quota-managements/deductions", _wire.parse_batch, {"items": bodies})

    def refund(self, company_id: int, unique_code: str, refund_code: str, reason: str | None) -> Call[Refund]:
        body = {
            "company_id": _wire.integer("company_id", company_id),
            "unique_code": unique_code,
            "refund_code": refund_code,
            "reason": reason,
        }
        return Call("POST", f"{self.prefix}/quota-managements/refund", _wire.parse_refund, _wire.without_none(body))

    def top_up(self, company_id: int, amount: int, payment_reference: str, waba_id: str | None = None) -> Call[Payment]:
        return self._payment("top-up", company_id, amount, payment_reference, waba_id)

    def settle_postpaid(
        self, company_id: int, amount: int, payment_reference: str, waba_id: str | None = None
    ) -> Call[Payment]:
        return self._payment("settle-postpaid", company_id, amount, payment_reference, waba_id)

    def _payment(
        self, action: str, company_id: int, amount: int, payment_reference: str, waba_id: str | None
    ) -> Call[Payment]:
        body = {
            "company_id": _wire.integer("company_id", company_id),
            "amount": _wire.integer("amount", amount),
            "payment_reference": payment_reference,
            "waba_id": waba_id,
        }
        path = f"{self.prefix}/quota-managements/{action}"
        return Call("POST", path, _wire.parse_payment, _wire.without_none(body))

    def balance(self, company_id: int) -> Call[Balance]:
        path = f"{self.prefix}/quota-managements/{_company_path(company_id)}/balance"
        return Call("GET", path, _wire.balance_parser(company_id))

    def invalidate_cache(self, company_id: int) -> Call[None]:
        path = f"{self.prefix}/quota-managements/{_company_path(company_id)}/invalidate-cache"
        return Call("PUT", path, _wire.parse_nothing)

    def put_company(
        self,
        company_id: int,
        billing_version: Literal["v2", "v3"],
        currency: str,
        timezone: str,
        package: PackageTerms | Mapping[str, JSONValue] | None,
    ) -> Call[JSONObject]:
        body = {
            "billing_version": billing_version,
            "currency": currency,
            "timezone": timezone,
            "package": None if package is None else _wire.package_body(package),
        }
        path = f"{self.prefix}/companies/{_company_path(company_id)}"
        return Call("PUT", path, _wire.parse_object, _wire.without_none(body))

    def put_waba(self, company_id: int, waba_id: str, name: str) -> Call[JSONObject]:
        path = f"{self.prefix}/companies/{_company_path(company_id)}/wabas/{_segment(waba_id)}"
        return Call("PUT", path, _wire.parse_object, {"name": name})

    def put_webhook(self, company_id: int, url: str, secret: str) -> Call[JSONObject]:
        path = f"{self.prefix}/companies/{_company_path(company_id)}/webhook"
        return Call("PUT", path, _wire.parse_object, {"url": url, "secret": secret})

    def put_price(
        self,
        deduction_code: str,
        unit_price: int,
        company_id: int | None,
        market: str | int | None,
        effective_from: datetime | str | None,
    ) -> Call[JSONObject]:
        body = _wire.price_body(unit_price, company_id, market, effective_from)
        return Call("PUT", f"{self.prefix}/price-list/{_segment(deduction_code)}", _wire.parse_object, body)
