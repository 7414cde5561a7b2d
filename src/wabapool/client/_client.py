"""The synchronous client of the internal (service-to-service) API."""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Literal, TypeVar

import httpx

from wabapool.client import _wire
from wabapool.client._config import http_settings
from wabapool.client._endpoints import DEFAULT_PREFIX, Call, Endpoints
from wabapool.client._models import Balance, BatchResult, Deduction, DeductionItem, PackageTerms, Payment, Refund
from wabapool.client._retry import RetryPolicy
from wabapool.domain.json_types import JSONObject, JSONValue

ResultT = TypeVar("ResultT")


class WabapoolClient:
    """Calls the wabapool internal API; every call returns a result or raises a WabapoolError.

    The one seam is `transport` (any httpx transport, e.g. httpx.MockTransport
    in tests). `sleep` and `random` are injected so retries can be tested
    without waiting.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_seconds: float = 5.0,
        max_retries: int = 3,
        backoff_seconds: float = 0.1,
        transport: httpx.BaseTransport | None = None,
        prefix: str = DEFAULT_PREFIX,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self._retry = RetryPolicy(max_retries, backoff_seconds, random)
        self._endpoints = Endpoints(prefix)
        self._sleep = sleep
        self._http = httpx.Client(transport=transport, **http_settings(base_url, api_key, timeout_seconds))

    def __repr__(self) -> str:
        return f"WabapoolClient(base_url={str(self._http.base_url)!r})"

    def __enter__(self) -> WabapoolClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections (and the transport)."""
        self._http.close()

    def _send(self, call: Call[ResultT]) -> ResultT:
        attempts = self._retry.start()
        while True:
            try:
                response = self._http.request(call.method, call.path, json=call.body)
            except httpx.HTTPError as exc:
                self._sleep(attempts.after_error(exc))
                continue
            delay_seconds = attempts.after_response(response)
            if delay_seconds is None:
                return call.parse(_wire.read(response))
            self._sleep(delay_seconds)

    # -- quota management ----------------------------------------------------

    def deduct(
        self,
        company_id: int,
        billing_code: str,
        deduction_code: str,
        unique_code: str,
        quantity: int,
        waba_id: str,
        **extra: str | None,
    ) -> Deduction:
        """Charge one message to the company's pool; `extra` fills the other `extra_attrs`."""
        item = DeductionItem(company_id, billing_code, deduction_code, unique_code, quantity, waba_id, **extra)
        return self._send(self._endpoints.deduct(item))

    def deduct_batch(self, items: Iterable[DeductionItem | Mapping[str, JSONValue]]) -> BatchResult:
        """Charge up to 1,000 messages in one request; one result per item, in order."""
        return self._send(self._endpoints.deduct_batch(items))

    def refund(self, company_id: int, unique_code: str, refund_code: str, reason: str | None = None) -> Refund:
        """Give back the deduction `unique_code`; `refund_code` is the refund's own idempotency key."""
        return self._send(self._endpoints.refund(company_id, unique_code, refund_code, reason))

    def top_up(self, company_id: int, amount: int, payment_reference: str, waba_id: str | None = None) -> Payment:
        """Credit a payment: postpaid use first, the rest to `additional` (`waba_id`: a v2 WABA's package)."""
        return self._send(self._endpoints.top_up(company_id, amount, payment_reference, waba_id))

    def settle_postpaid(
        self, company_id: int, amount: int, payment_reference: str, waba_id: str | None = None
    ) -> Payment:
        """Record a paid postpaid bill (`waba_id`: a v2 WABA's package)."""
        return self._send(self._endpoints.settle_postpaid(company_id, amount, payment_reference, waba_id))

    def balance(self, company_id: int) -> Balance:
        """The authoritative (uncached) balance of the company's pool."""
        return self._send(self._endpoints.balance(company_id))

    def invalidate_cache(self, company_id: int) -> None:
        """Drop the company's cached balance."""
        self._send(self._endpoints.invalidate_cache(company_id))

    # -- provisioning (idempotent upserts) -----------------------------------

    def put_company(
        self,
        company_id: int,
        billing_version: Literal["v2", "v3"] = "v3",
        currency: str = "IDR",
        timezone: str = "Asia/Jakarta",
        package: PackageTerms | Mapping[str, JSONValue] | None = None,
    ) -> JSONObject:
        """Create or update a company and its pool."""
        return self._send(self._endpoints.put_company(company_id, billing_version, currency, timezone, package))

    def put_waba(self, company_id: int, waba_id: str, name: str) -> JSONObject:
        """Create or update a WABA; it joins the company's pool."""
        return self._send(self._endpoints.put_waba(company_id, waba_id, name))

    def put_webhook(self, company_id: int, url: str, secret: str) -> JSONObject:
        """Set where the company's events are delivered, and the signing secret."""
        return self._send(self._endpoints.put_webhook(company_id, url, secret))

    def put_price(
        self,
        deduction_code: str,
        unit_price: int,
        company_id: int | None = None,
        market: str | None = None,
        effective_from: datetime | str | None = None,
    ) -> JSONObject:
        """Create or update a price-list entry (a new `effective_from` is a new row)."""
        return self._send(self._endpoints.put_price(deduction_code, unit_price, company_id, market, effective_from))
