"""JSON bodies to send and answers to read; HTTP errors become typed exceptions here, once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal

import httpx

from wabapool.client._exceptions import InvalidResponse, WabapoolError, default_code, make_error
from wabapool.client._models import (
    Allocation,
    Balance,
    BatchItem,
    BatchResult,
    Deduction,
    DeductionItem,
    PackageTerms,
    Payment,
    Refund,
)
from wabapool.domain.json_types import JSONObject, JSONValue

_EXTRA_ATTRS = ("waba_id", "broadcast_id", "message_id", "category", "customer_name", "phone_number")


# -- requests ---------------------------------------------------------------


def integer(name: str, value: object) -> int:
    """Money and counts are exact integers; a float (or bool) is a caller bug."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


def without_none(body: Mapping[str, object]) -> dict[str, object]:
    """A body without its unset optional fields (the service applies their defaults)."""
    return {key: value for key, value in body.items() if value is not None}


def deduction_item(value: DeductionItem | Mapping[str, JSONValue]) -> DeductionItem:
    """Accept a DeductionItem, its keyword arguments, or a wire-shaped body with `extra_attrs`."""
    if isinstance(value, DeductionItem):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"a batch item must be a DeductionItem or a mapping, got {type(value).__name__}")
    flat = {key: item for key, item in value.items() if key != "extra_attrs"}
    flat.update(value.get("extra_attrs") or {})
    return DeductionItem(**flat)


def deduction_body(item: DeductionItem) -> dict[str, object]:
    """The wire body of one deduction."""
    return {
        "company_id": integer("company_id", item.company_id),
        "billing_code": item.billing_code,
        "deduction_code": item.deduction_code,
        "unique_code": item.unique_code,
        "quantity": integer("quantity", item.quantity),
        "extra_attrs": without_none({name: getattr(item, name) for name in _EXTRA_ATTRS}),
    }


def package_body(package: PackageTerms | Mapping[str, JSONValue]) -> dict[str, object]:
    """The wire body of a package; the threshold goes as a decimal string, never a float."""
    terms = package if isinstance(package, PackageTerms) else PackageTerms(**package)
    threshold = terms.threshold_percent
    if threshold is not None and not isinstance(threshold, Decimal):
        threshold = Decimal(integer("threshold_percent", threshold))
    return {
        "allowance": integer("allowance", terms.allowance),
        "postpaid_limit": integer("postpaid_limit", terms.postpaid_limit),
        "cycle_anchor_day": integer("cycle_anchor_day", terms.cycle_anchor_day),
        "threshold_percent": None if threshold is None else str(threshold),
    }


def price_body(
    unit_price: int, company_id: int | None, market: str | int | None, effective_from: datetime | str | None
) -> dict[str, object]:
    """The wire body of one price-list entry; absent fields keep the service's defaults."""
    return without_none(
        {
            "unit_price": integer("unit_price", unit_price),
            "company_id": None if company_id is None else integer("company_id", company_id),
            "market": None if market is None else str(market),
            "effective_from": effective_from.isoformat() if isinstance(effective_from, datetime) else effective_from,
        }
    )


# -- answers ----------------------------------------------------------------


def _invalid(message: str, data: object = None) -> InvalidResponse:
    return InvalidResponse("invalid_response", message, {"body": repr(data)[:500]})


def _object(data: object, what: str) -> Mapping[str, object]:
    if not isinstance(data, Mapping):
        raise _invalid(f"{what} must be a JSON object", data)
    return data


def _int(data: Mapping[str, object], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{key!r} must be an integer", data)
    return value


def _str(data: Mapping[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise _invalid(f"{key!r} must be a string", data)
    return value


def _optional_str(data: Mapping[str, object], key: str) -> str | None:
    return None if data.get(key) is None else _str(data, key)


def _allocations(data: Mapping[str, object]) -> tuple[Allocation, ...]:
    items = data.get("allocations", [])
    if not isinstance(items, list):
        raise _invalid("'allocations' must be a list", data)
    return tuple(
        Allocation(_str(item, "credited_to"), _str(item, "quota_type"), _int(item, "amount"))
        for item in (_object(entry, "an allocation") for entry in items)
    )


def parse_deduction(data: object) -> Deduction:
    """Read a deduction answer."""
    body = _object(data, "a deduction")
    return Deduction(
        deduction_id=_int(body, "deduction_id"),
        unique_code=_str(body, "unique_code"),
        amount=_int(body, "amount"),
        value_before=_int(body, "value_before"),
        value_after=_int(body, "value_after"),
        credited_to=_optional_str(body, "credited_to"),
        allocations=_allocations(body),
        replayed=body.get("replayed") is True,
    )


def _batch_item(data: object) -> BatchItem:
    body = _object(data, "a batch result")
    status = body.get("status")
    if status != "applied" and status != "replayed" and status != "rejected":
        raise _invalid("'status' must be applied, replayed or rejected", body)
    if status == "rejected":
        return BatchItem(_str(body, "unique_code"), "rejected", error=_item_error(body.get("error")))
    deduction = parse_deduction({**body, "replayed": status == "replayed" or body.get("replayed") is True})
    return BatchItem(deduction.unique_code, status, deduction=deduction)


def _item_error(error: object) -> WabapoolError:
    # One unreadable item error must not hide the outcome of the items that were applied.
    try:
        return _envelope_error(error, None)
    except InvalidResponse:
        return WabapoolError("rejected", "the service rejected the item without a readable error", {"error": error})


def parse_batch(data: object) -> BatchResult:
    """Read a batch answer: one result per item, in request order."""
    results = _object(data, "a batch answer").get("results")
    if not isinstance(results, list):
        raise _invalid("'results' must be a list", data)
    return BatchResult(tuple(_batch_item(entry) for entry in results))


def parse_refund(data: object) -> Refund:
    """Read a refund answer."""
    body = _object(data, "a refund")
    return Refund(
        refund_id=_int(body, "refund_id"),
        unique_code=_str(body, "unique_code"),
        refund_code=_str(body, "refund_code"),
        amount=_int(body, "amount"),
        value_before=_int(body, "value_before"),
        value_after=_int(body, "value_after"),
        allocations=_allocations(body),
        replayed=body.get("replayed") is True,
    )


def parse_payment(data: object) -> Payment:
    """Read a top-up or settlement answer."""
    body = _object(data, "a payment")
    return Payment(
        payment_id=_int(body, "payment_id"),
        payment_reference=_str(body, "payment_reference"),
        amount=_int(body, "amount"),
        value_before=_int(body, "value_before"),
        value_after=_int(body, "value_after"),
        allocations=_allocations(body),
        replayed=body.get("replayed") is True,
    )


def balance_parser(company_id: int) -> Callable[[object], Balance]:
    """Read the balance answer: the `balance` object at the top level (or nested under `balance`)."""

    def parse(data: object) -> Balance:
        raw = _object(data, "a balance")
        body = _object(raw["balance"], "'balance'") if isinstance(raw.get("balance"), Mapping) else raw
        wabi = _object(body.get("wabi"), "'wabi'")
        additional = _object(body.get("additional"), "'additional'")
        postpaid = _object(body.get("postpaid"), "'postpaid'")
        return Balance(
            company_id=company_id,
            total=_int(body, "total"),
            available=_int(body, "available"),
            allowance=_int(wabi, "allowance"),
            initial_remaining=_int(wabi, "remaining"),
            additional_remaining=_int(additional, "remaining"),
            postpaid_limit=_int(postpaid, "limit"),
            postpaid_used=_int(postpaid, "used"),
            raw=dict(raw),
        )

    return parse


def parse_object(data: object) -> JSONObject:
    """Keep an answer whose shape the contract leaves open as a plain dict."""
    return {} if data is None else dict(_object(data, "the answer"))


def parse_nothing(data: object) -> None:
    """An answer whose body carries nothing the caller needs."""
    return None


# -- HTTP -------------------------------------------------------------------


def _envelope_error(error: object, status_code: int | None) -> WabapoolError:
    body = _object(error, "'error'")
    details = body.get("details")
    return make_error(
        _str(body, "code"),
        str(body.get("message") or ""),
        details if isinstance(details, Mapping) else {},
        status_code,
    )


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> WabapoolError:
    """The typed exception for an error answer, envelope or not."""
    status_code = response.status_code
    data = _json(response)
    if isinstance(data, Mapping) and isinstance(data.get("error"), Mapping):
        try:
            return _envelope_error(data["error"], status_code)
        except InvalidResponse:
            pass  # a malformed envelope still has a status to go by
    detail = data.get("detail") if isinstance(data, Mapping) else None
    message = detail if isinstance(detail, str) else response.reason_phrase or f"HTTP {status_code}"
    details = {} if detail is None else {"detail": detail}
    return make_error(default_code(status_code), message, details, status_code)


def read(response: httpx.Response) -> object:
    """The JSON of a success answer (None when empty); raise the typed error otherwise."""
    if not response.is_success:
        raise error_from_response(response)
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError as exc:
        raise _invalid("the answer is not JSON", response.text) from exc
