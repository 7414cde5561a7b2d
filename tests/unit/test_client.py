"""The client SDK against a scripted service behind httpx.MockTransport (the transport seam)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from wabapool.client import (
    AlreadyRefunded,
    AsyncWabapoolClient,
    Balance,
    Conflict,
    Deduction,
    DeductionItem,
    Forbidden,
    IdempotencyConflict,
    InvalidResponse,
    NotFound,
    NotSharedPool,
    PackageTerms,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    UnknownDeductionCode,
    ValidationError,
    WabapoolClient,
    WabapoolError,
)
from wabapool.client._retry import MAX_BACKOFF_SECONDS, RETRY_AFTER_MAX_SECONDS, RetryPolicy

BASE_URL = "http://billing.test"
API_KEY = "pipeline-secret"

Answer = Callable[[httpx.Request], httpx.Response]


def reply(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
    """A fresh response each time (a Response's stream cannot be read twice)."""

    def answer(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return answer


def fail(exc_type: type[httpx.TransportError]) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc_type("scripted failure", request=request)

    return answer


def error(status: int, code: str, message: str = "refused", **details: Any) -> Answer:
    return reply(status, {"error": {"code": code, "message": message, "details": details}})


class Service:
    """Answers in the scripted order (the last answer repeats) and records every request."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request)

    def bodies(self) -> list[Any]:
        return [json.loads(request.content) if request.content else None for request in self.requests]


def make_client(service: Service, sleeps: list[float] | None = None, **options: Any) -> WabapoolClient:
    recorded = [] if sleeps is None else sleeps
    options.setdefault("random", lambda: 0.5)
    return WabapoolClient(BASE_URL, API_KEY, transport=httpx.MockTransport(service), sleep=recorded.append, **options)


def make_async_client(service: Service, sleeps: list[float] | None = None, **options: Any) -> AsyncWabapoolClient:
    recorded = [] if sleeps is None else sleeps

    async def sleep(seconds: float) -> None:
        recorded.append(seconds)

    options.setdefault("random", lambda: 0.5)
    return AsyncWabapoolClient(BASE_URL, API_KEY, transport=httpx.MockTransport(service), sleep=sleep, **options)


DEDUCTION = {
    "deduction_id": 7,
    "unique_code": "wamid.1",
    "amount": 1500,
    "value_before": 1000,
    "value_after": -500,
    "credited_to": "wa_balance_initial",
    "allocations": [
        {"credited_to": "wa_balance_initial", "quota_type": "initial", "amount": 1000},
        {"credited_to": "wa_balance_postpaid", "quota_type": "postpaid", "amount": 500},
    ],
    "replayed": False,
}

REFUND = {
    "refund_id": 3,
    "unique_code": "wamid.1",
    "refund_code": "refund-1",
    "amount": 1500,
    "value_before": -500,
    "value_after": 1000,
    "allocations": [{"credited_to": "wa_balance_postpaid", "quota_type": "postpaid", "amount": 500}],
    "replayed": False,
}

PAYMENT = {
    "payment_id": 11,
    "payment_reference": "pay-1",
    "amount": 20000,
    "value_before": -500,
    "value_after": 19500,
    "allocations": [{"credited_to": "wa_balance_additional", "quota_type": "additional", "amount": 19500}],
    "replayed": False,
}

BALANCE = {
    "total": 900,
    "available": 5900,
    "wabi": {"allowance": 1000, "remaining": 400, "resets_at": "2026-02-01T00:00:00+07:00"},
    "additional": {"remaining": 600},
    "postpaid": {"limit": 5000, "used": 100},
}


def deduct(client: WabapoolClient, unique_code: str = "wamid.1") -> Deduction:
    return client.deduct(42, "wa_broadcast", "wa_marketing_id", unique_code, 1, "1029384756")


# -- request shape and answers ---------------------------------------------------------------


def test_deduct_posts_the_deduction_body_with_the_api_key_header() -> None:
    service = Service(reply(200, DEDUCTION))
    with make_client(service) as client:
        client.deduct(
            42, "wa_broadcast", "wa_marketing_id", "wamid.1", 1, "1029384756", broadcast_id="b-9", category="marketing"
        )

    (request,) = service.requests
    assert request.method == "POST"
    assert request.url == f"{BASE_URL}/iag/v1/quota-managements/deduction"
    assert request.headers["X-Api-Key"] == API_KEY
    assert service.bodies() == [
        {
            "company_id": 42,
            "billing_code": "wa_broadcast",
            "deduction_code": "wa_marketing_id",
            "unique_code": "wamid.1",
            "quantity": 1,
            "extra_attrs": {"waba_id": "1029384756", "broadcast_id": "b-9", "category": "marketing"},
        }
    ]


def test_deduct_returns_a_frozen_deduction_with_integer_money_and_every_allocation() -> None:
    with make_client(Service(reply(200, DEDUCTION))) as client:
        deduction = deduct(client)

    assert deduction.deduction_id == 7
    assert (deduction.amount, deduction.value_before, deduction.value_after) == (1500, 1000, -500)
    assert deduction.credited_to == "wa_balance_initial"
    assert [(a.quota_type, a.amount) for a in deduction.allocations] == [("initial", 1000), ("postpaid", 500)]
    assert all(type(a.amount) is int for a in deduction.allocations)
    assert deduction.replayed is False
    with pytest.raises(FrozenInstanceError):
        deduction.amount = 0  # type: ignore[misc]


def test_deduct_returns_a_replay_as_a_result_not_an_error() -> None:
    with make_client(Service(reply(200, {**DEDUCTION, "replayed": True}))) as client:
        assert deduct(client).replayed is True


def test_a_free_message_has_no_bucket_and_no_allocation() -> None:
    free = {**DEDUCTION, "amount": 0, "value_after": 1000, "credited_to": None, "allocations": []}
    with make_client(Service(reply(200, free))) as client:
        deduction = deduct(client)

    assert (deduction.amount, deduction.credited_to, deduction.allocations) == (0, None, ())


def test_deduct_refuses_an_unknown_extra_attribute_before_sending() -> None:
    service = Service(reply(200, DEDUCTION))
    with make_client(service) as client, pytest.raises(TypeError):
        client.deduct(42, "wa_broadcast", "wa_marketing_id", "wamid.1", 1, "1029384756", colour="red")
    assert service.requests == []


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.top_up(42, 10.5, "pay-1"),
        lambda c: c.settle_postpaid(42, True, "pay-1"),
        lambda c: c.deduct(42, "wa_broadcast", "wa_marketing_id", "wamid.1", 1.0, "1029384756"),
        lambda c: c.put_price("wa_marketing_id", 1500.0),
    ],
    ids=["float top-up", "bool settlement", "float quantity", "float price"],
)
def test_money_and_counts_that_are_not_ints_are_refused_before_sending(call: Callable[[WabapoolClient], Any]) -> None:
    service = Service(reply(200, PAYMENT))
    with make_client(service) as client, pytest.raises(TypeError):
        call(client)
    assert service.requests == []


def test_deduct_batch_sends_every_item_and_reads_one_result_per_item_in_order() -> None:
    results = [
        {**DEDUCTION, "unique_code": "a", "status": "applied"},
        {**DEDUCTION, "unique_code": "b", "status": "replayed", "replayed": True},
        {
            "unique_code": "c",
            "status": "rejected",
            "error": {"code": "quota_exceeded", "message": "not enough balance", "details": {"available": 10}},
        },
    ]
    service = Service(reply(200, {"results": results}))
    items = [DeductionItem(42, "wa_broadcast", "wa_marketing_id", code, 1, "1029384756") for code in "abc"]
    with make_client(service) as client:
        batch = client.deduct_batch(items)

    request = service.requests[0]
    assert request.url.path == "/iag/v1/quota-managements/deductions"
    assert [item["unique_code"] for item in service.bodies()[0]["items"]] == ["a", "b", "c"]
    assert [(item.unique_code, item.status, item.ok) for item in batch] == [
        ("a", "applied", True),
        ("b", "replayed", True),
        ("c", "rejected", False),
    ]
    assert batch[0].deduction is not None and batch[0].deduction.replayed is False
    assert batch[1].deduction is not None and batch[1].deduction.replayed is True
    rejected = batch.rejected[0]
    assert isinstance(rejected.error, QuotaExceeded)
    assert rejected.error.details == {"available": 10}
    assert rejected.deduction is None


def test_deduct_batch_accepts_keyword_mappings_and_wire_shaped_bodies_alike() -> None:
    service = Service(reply(200, {"results": []}))
    flat = {
        "company_id": 42,
        "billing_code": "wa_broadcast",
        "deduction_code": "wa_utility_id",
        "unique_code": "a",
        "quantity": 2,
        "waba_id": "1",
        "message_id": "m-1",
    }
    wire = {**{k: v for k, v in flat.items() if k not in ("waba_id", "message_id")}, "unique_code": "b"}
    wire["extra_attrs"] = {"waba_id": "1", "message_id": "m-1"}
    with make_client(service) as client:
        client.deduct_batch([flat, wire])

    sent = service.bodies()[0]["items"]
    assert sent[0] == {**wire, "unique_code": "a"}
    assert sent[1] == wire


@pytest.mark.parametrize("count", [0, 1001])
def test_deduct_batch_refuses_an_empty_or_oversized_batch_before_sending(count: int) -> None:
    service = Service(reply(200, {"results": []}))
    items = [DeductionItem(42, "wa_broadcast", "wa_marketing_id", f"u{n}", 1, "1") for n in range(count)]
    with make_client(service) as client, pytest.raises(ValueError):
        client.deduct_batch(items)
    assert service.requests == []


def test_refund_posts_the_original_unique_code_and_its_own_refund_code() -> None:
    service = Service(reply(200, REFUND))
    with make_client(service) as client:
        refund = client.refund(42, "wamid.1", "refund-1", reason="message failed")

    assert service.requests[0].url.path == "/iag/v1/quota-managements/refund"
    assert service.bodies() == [
        {"company_id": 42, "unique_code": "wamid.1", "refund_code": "refund-1", "reason": "message failed"}
    ]
    assert (refund.refund_id, refund.amount, refund.value_after) == (3, 1500, 1000)
    assert refund.allocations[0].credited_to == "wa_balance_postpaid"


@pytest.mark.parametrize(("method", "path"), [("top_up", "top-up"), ("settle_postpaid", "settle-postpaid")])
def test_payments_post_to_their_own_path_and_read_the_payment(method: str, path: str) -> None:
    service = Service(reply(200, PAYMENT))
    with make_client(service) as client:
        payment = getattr(client, method)(42, 20000, "pay-1")

    assert service.requests[0].url.path == f"/iag/v1/quota-managements/{path}"
    assert service.bodies() == [{"company_id": 42, "amount": 20000, "payment_reference": "pay-1"}]
    assert (payment.payment_id, payment.payment_reference, payment.value_after) == (11, "pay-1", 19500)


def test_balance_reads_the_pool_figures_and_keeps_the_raw_answer() -> None:
    service = Service(reply(200, BALANCE))
    with make_client(service) as client:
        balance = client.balance(42)

    assert service.requests[0].method == "GET"
    assert service.requests[0].url.path == "/iag/v1/quota-managements/42/balance"
    assert balance == Balance(42, 900, 5900, 1000, 400, 600, 5000, 100)
    assert balance.raw["wabi"]["resets_at"] == "2026-02-01T00:00:00+07:00"


def test_balance_also_reads_figures_nested_under_a_balance_key() -> None:
    with make_client(Service(reply(200, {"balance": BALANCE, "low_balance": True}))) as client:
        balance = client.balance(42)

    assert (balance.total, balance.postpaid_used) == (900, 100)
    assert balance.raw["low_balance"] is True


def test_invalidate_cache_puts_to_the_company_path_and_returns_nothing() -> None:
    service = Service(reply(204))
    with make_client(service) as client:
        assert client.invalidate_cache(42) is None

    assert (service.requests[0].method, service.requests[0].url.path) == (
        "PUT",
        "/iag/v1/quota-managements/42/invalidate-cache",
    )


def test_put_company_sends_the_package_with_the_threshold_as_exact_text() -> None:
    service = Service(reply(200, {"company_id": 42}))
    package = PackageTerms(allowance=1_000_000, postpaid_limit=500_000, threshold_percent=Decimal("25.50"))
    with make_client(service) as client:
        assert client.put_company(42, "v3", "IDR", "Asia/Jakarta", package) == {"company_id": 42}

    assert (service.requests[0].method, service.requests[0].url.path) == ("PUT", "/iag/v1/companies/42")
    assert service.bodies() == [
        {
            "billing_version": "v3",
            "currency": "IDR",
            "timezone": "Asia/Jakarta",
            "package": {
                "allowance": 1_000_000,
                "postpaid_limit": 500_000,
                "cycle_anchor_day": 1,
                "threshold_percent": "25.50",
            },
        }
    ]


def test_put_company_sends_a_null_threshold_so_the_default_applies() -> None:
    service = Service(reply(200, {}))
    with make_client(service) as client:
        client.put_company(42, package={"allowance": 1000})

    assert service.bodies()[0]["package"]["threshold_percent"] is None


def test_put_waba_and_put_price_put_to_quoted_paths_without_unset_fields() -> None:
    service = Service(reply(200, {}))
    with make_client(service) as client:
        client.put_waba(42, "1029 384", "Main line")
        client.put_price("wa_marketing_id", 1500, market="62", effective_from=datetime(2026, 10, 1, tzinfo=UTC))
        client.put_price("wa/odd", 0, company_id=42)

    paths = [request.url.raw_path.decode() for request in service.requests]
    assert paths == [
        "/iag/v1/companies/42/wabas/1029%20384",
        "/iag/v1/price-list/wa_marketing_id",
        "/iag/v1/price-list/wa%2Fodd",
    ]
    assert service.bodies() == [
        {"name": "Main line"},
        {"unit_price": 1500, "market": "62", "effective_from": "2026-10-01T00:00:00+00:00"},
        {"unit_price": 0, "company_id": 42},
    ]


def test_put_webhook_sends_the_url_and_secret() -> None:
    service = Service(reply(200, {}))
    with make_client(service) as client:
        client.put_webhook(42, "https://hooks.example/billing", "s3cret")

    assert service.requests[0].url.path == "/iag/v1/companies/42/webhook"
    assert service.bodies() == [{"url": "https://hooks.example/billing", "secret": "s3cret"}]


def test_the_prefix_can_be_the_gateway_rewrite() -> None:
    service = Service(reply(200, DEDUCTION))
    with make_client(service, prefix="/internal/qontak/billing/v1/") as client:
        deduct(client)

    assert service.requests[0].url.path == "/internal/qontak/billing/v1/quota-managements/deduction"


def test_every_attempt_carries_the_configured_timeout() -> None:
    service = Service(reply(200, DEDUCTION))
    with make_client(service, timeout_seconds=1.5) as client:
        deduct(client)

    assert service.requests[0].extensions["timeout"] == {"connect": 1.5, "read": 1.5, "write": 1.5, "pool": 1.5}


def test_the_api_key_never_shows_in_the_client_repr() -> None:
    with make_client(Service(reply(200, {}))) as client:
        assert API_KEY not in repr(client)


def test_leaving_the_with_block_closes_the_client() -> None:
    with make_client(Service(reply(200, DEDUCTION))) as client:
        pass
    with pytest.raises(RuntimeError):
        deduct(client)


@pytest.mark.parametrize(
    "options",
    [{"max_retries": -1}, {"max_retries": 11}, {"timeout_seconds": 0}, {"backoff_seconds": 30}, {"prefix": "iag/v1"}],
)
def test_unbounded_or_malformed_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_client(Service(reply(200, {})), **options)


def test_an_empty_api_key_is_refused() -> None:
    with pytest.raises(ValueError):
        WabapoolClient(BASE_URL, "")


# -- errors ------------------------------------------------------------------------------------

ERROR_CASES = [
    (400, "validation_error", ValidationError),
    (400, "invalid_request", ValidationError),
    (400, "quota_exceeded", QuotaExceeded),
    (400, "unknown_deduction_code", UnknownDeductionCode),
    (401, "unauthorized", Unauthorized),
    (403, "forbidden", Forbidden),
    (404, "not_found", NotFound),
    (404, "unknown_company", NotFound),
    (404, "unknown_waba", NotFound),
    (404, "unknown_deduction", NotFound),
    (409, "idempotency_conflict", IdempotencyConflict),
    (409, "already_refunded", AlreadyRefunded),
    (413, "payload_too_large", PayloadTooLarge),
    (422, "not_shared_pool", NotSharedPool),
]


@pytest.mark.parametrize(("status", "code", "expected"), ERROR_CASES)
def test_each_error_code_raises_its_own_exception_without_a_retry(
    status: int, code: str, expected: type[WabapoolError]
) -> None:
    service = Service(error(status, code, "refused for a reason", field="waba_id"))
    sleeps: list[float] = []
    with make_client(service, sleeps) as client, pytest.raises(expected) as caught:
        deduct(client)

    assert (caught.value.code, caught.value.message, caught.value.status_code) == (code, "refused for a reason", status)
    assert caught.value.details == {"field": "waba_id"}
    assert len(service.requests) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, ValidationError), (404, NotFound), (409, Conflict), (422, ValidationError), (500, ServiceUnavailable)],
)
def test_an_unknown_code_maps_by_its_http_status(status: int, expected: type[WabapoolError]) -> None:
    with make_client(Service(error(status, "brand_new_code"))) as client, pytest.raises(expected) as caught:
        deduct(client)
    assert caught.value.code == "brand_new_code"


def test_an_unknown_code_with_an_unmapped_status_raises_the_base_error() -> None:
    with make_client(Service(error(418, "teapot"))) as client, pytest.raises(WabapoolError) as caught:
        deduct(client)
    assert type(caught.value) is WabapoolError
    assert (caught.value.code, caught.value.status_code) == ("teapot", 418)


def test_an_error_without_the_envelope_still_raises_a_typed_error() -> None:
    with make_client(Service(reply(404, {"detail": "Not Found"}))) as client, pytest.raises(NotFound) as caught:
        client.balance(42)
    assert (caught.value.code, caught.value.message) == ("not_found", "Not Found")


def test_a_proxy_page_on_502_becomes_service_unavailable_after_the_retries() -> None:
    def proxy_page(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    with make_client(Service(proxy_page), max_retries=1) as client, pytest.raises(ServiceUnavailable) as caught:
        deduct(client)
    assert (caught.value.code, caught.value.status_code) == ("service_unavailable", 502)


@pytest.mark.parametrize(
    "answer",
    [
        reply(200, {**DEDUCTION, "amount": 15.5}),
        reply(200, {"unexpected": True}),
        reply(200, [1, 2]),
        lambda request: httpx.Response(200, text="not json"),
    ],
    ids=["float amount", "missing fields", "not an object", "not json"],
)
def test_a_success_answer_that_breaks_the_contract_raises_invalid_response(answer: Answer) -> None:
    with make_client(Service(answer)) as client, pytest.raises(InvalidResponse):
        deduct(client)


# -- retries -----------------------------------------------------------------------------------


def test_a_timeout_is_retried_with_the_identical_body_and_the_result_is_returned() -> None:
    service = Service(fail(httpx.ReadTimeout), reply(200, {**DEDUCTION, "replayed": True}))
    sleeps: list[float] = []
    with make_client(service, sleeps) as client:
        deduction = deduct(client)

    assert deduction.replayed is True
    first, second = service.requests
    assert first.content == second.content
    assert service.bodies()[1]["unique_code"] == "wamid.1"
    assert second.headers["X-Api-Key"] == API_KEY
    assert len(sleeps) == 1


def test_503_then_success_returns_the_result_after_resending_the_same_unique_code() -> None:
    service = Service(error(503, "service_unavailable"), error(503, "service_unavailable"), reply(200, DEDUCTION))
    with make_client(service) as client:
        assert deduct(client).deduction_id == 7

    assert [body["unique_code"] for body in service.bodies()] == ["wamid.1"] * 3


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_stop_after_max_retries_and_raise_service_unavailable(status: int) -> None:
    service = Service(error(status, "service_unavailable"))
    sleeps: list[float] = []
    with make_client(service, sleeps, max_retries=3) as client, pytest.raises(ServiceUnavailable):
        deduct(client)

    assert len(service.requests) == 4
    assert len(sleeps) == 3
    assert len({request.content for request in service.requests}) == 1


@pytest.mark.parametrize(
    ("failure", "code"),
    [(httpx.ConnectTimeout, "timeout"), (httpx.ReadTimeout, "timeout"), (httpx.ConnectError, "transport_error")],
)
def test_timeouts_and_connection_errors_exhaust_into_a_transport_error(
    failure: type[httpx.TransportError], code: str
) -> None:
    service = Service(fail(failure))
    with make_client(service, max_retries=2) as client, pytest.raises(TransportError) as caught:
        deduct(client)

    assert len(service.requests) == 3
    assert caught.value.code == code
    assert caught.value.details == {"attempts": 3, "cause": failure.__name__}
    assert caught.value.status_code is None
    assert isinstance(caught.value.__cause__, failure)


def test_a_transport_failure_that_cannot_heal_is_not_retried() -> None:
    service = Service(fail(httpx.UnsupportedProtocol))
    with make_client(service) as client, pytest.raises(TransportError):
        deduct(client)
    assert len(service.requests) == 1


def test_429_waits_for_the_retry_after_seconds_the_service_asks_for() -> None:
    service = Service(reply(429, {"error": {"code": "rate_limited", "message": "slow down"}}, {"Retry-After": "2"}))
    service.answers.append(reply(200, DEDUCTION))
    sleeps: list[float] = []
    with make_client(service, sleeps) as client:
        deduct(client)

    assert sleeps == [2.0]
    assert service.requests[0].content == service.requests[1].content


def test_429_retry_after_is_capped_so_delivery_is_never_blocked_for_long() -> None:
    service = Service(reply(429, None, {"Retry-After": "600"}), reply(200, DEDUCTION))
    sleeps: list[float] = []
    with make_client(service, sleeps) as client:
        deduct(client)

    assert sleeps == [RETRY_AFTER_MAX_SECONDS]


def test_429_with_a_date_retry_after_falls_back_to_the_backoff() -> None:
    service = Service(reply(429, None, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), reply(200, DEDUCTION))
    sleeps: list[float] = []
    with make_client(service, sleeps, backoff_seconds=0.1) as client:
        deduct(client)

    assert sleeps == [0.05]


def test_429_that_persists_raises_rate_limited_after_max_retries() -> None:
    service = Service(error(429, "rate_limited"))
    with make_client(service, max_retries=2) as client, pytest.raises(RateLimited):
        deduct(client)
    assert len(service.requests) == 3


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "quota_exceeded"), (400, "validation_error"), (409, "idempotency_conflict"), (500, "internal_error")],
)
def test_final_answers_are_never_retried(status: int, code: str) -> None:
    service = Service(error(status, code), reply(200, DEDUCTION))
    sleeps: list[float] = []
    with make_client(service, sleeps) as client, pytest.raises(WabapoolError):
        deduct(client)

    assert len(service.requests) == 1
    assert sleeps == []


def test_the_backoff_doubles_under_full_jitter() -> None:
    service = Service(fail(httpx.ConnectError))
    sleeps: list[float] = []
    with (
        make_client(service, sleeps, backoff_seconds=0.1, random=lambda: 0.5) as client,
        pytest.raises(TransportError),
    ):
        deduct(client)

    assert sleeps == pytest.approx([0.05, 0.1, 0.2])


def test_the_jitter_draws_every_wait_from_the_random_source() -> None:
    draws = iter([0.0, 0.99, 0.25])
    service = Service(fail(httpx.ConnectError))
    sleeps: list[float] = []
    with (
        make_client(service, sleeps, backoff_seconds=0.1, random=lambda: next(draws)) as client,
        pytest.raises(TransportError),
    ):
        deduct(client)

    assert sleeps == pytest.approx([0.0, 0.198, 0.1])


def test_one_wait_never_grows_past_the_backoff_cap() -> None:
    policy = RetryPolicy(max_retries=10, backoff_seconds=1.0, random=lambda: 0.999999)
    assert policy.backoff_seconds_for(9) <= MAX_BACKOFF_SECONDS


def test_max_retries_zero_sends_exactly_once() -> None:
    service = Service(error(503, "service_unavailable"))
    with make_client(service, max_retries=0) as client, pytest.raises(ServiceUnavailable):
        deduct(client)
    assert len(service.requests) == 1


def test_a_retried_batch_resends_every_unique_code_unchanged() -> None:
    service = Service(fail(httpx.ReadTimeout), reply(200, {"results": []}))
    items = [DeductionItem(42, "wa_broadcast", "wa_marketing_id", f"u{n}", 1, "1") for n in range(3)]
    with make_client(service) as client:
        client.deduct_batch(items)

    first, second = service.requests
    assert first.content == second.content


# -- async parity ------------------------------------------------------------------------------

PARITY_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any], Any]] = [
    ("deduct", (42, "wa_broadcast", "wa_marketing_id", "wamid.1", 1, "1"), {"message_id": "m"}, DEDUCTION),
    ("deduct_batch", ([DeductionItem(42, "b", "wa_marketing_id", "u", 1, "1")],), {}, {"results": []}),
    ("refund", (42, "wamid.1", "refund-1"), {}, REFUND),
    ("top_up", (42, 20000, "pay-1"), {}, PAYMENT),
    ("settle_postpaid", (42, 20000, "pay-2"), {}, PAYMENT),
    ("balance", (42,), {}, BALANCE),
    ("invalidate_cache", (42,), {}, None),
    ("put_company", (42,), {"package": PackageTerms(1000)}, {}),
    ("put_waba", (42, "1", "Main"), {}, {}),
    ("put_webhook", (42, "https://hooks.example", "s"), {}, {}),
    ("put_price", ("wa_marketing_id", 1500), {"market": "62"}, {}),
]


@pytest.mark.parametrize(("method", "args", "kwargs", "answer"), PARITY_CALLS, ids=[c[0] for c in PARITY_CALLS])
async def test_async_client_sends_the_same_request_and_returns_the_same_result(
    method: str, args: tuple[Any, ...], kwargs: dict[str, Any], answer: Any
) -> None:
    sync_service, async_service = Service(reply(200, answer)), Service(reply(200, answer))
    with make_client(sync_service) as client:
        sync_result = getattr(client, method)(*args, **kwargs)
    async with make_async_client(async_service) as async_client:
        async_result = await getattr(async_client, method)(*args, **kwargs)

    sent, async_sent = sync_service.requests[0], async_service.requests[0]
    assert (async_sent.method, async_sent.url, async_sent.content) == (sent.method, sent.url, sent.content)
    assert async_sent.headers["X-Api-Key"] == API_KEY
    assert async_result == sync_result


def test_async_client_has_every_public_method_of_the_sync_client_with_the_same_parameters() -> None:
    renamed = {"close": "aclose"}
    for name, method in inspect.getmembers(WabapoolClient, inspect.isfunction):
        if name.startswith("_"):
            continue
        async_method = getattr(AsyncWabapoolClient, renamed.get(name, name))
        assert inspect.iscoroutinefunction(async_method), name
        assert list(inspect.signature(async_method).parameters) == list(inspect.signature(method).parameters), name
    sync_init = inspect.signature(WabapoolClient.__init__).parameters
    assert list(inspect.signature(AsyncWabapoolClient.__init__).parameters) == list(sync_init)


async def test_async_client_retries_a_timeout_with_the_identical_body_and_awaits_the_injected_sleep() -> None:
    service = Service(fail(httpx.ReadTimeout), error(503, "service_unavailable"), reply(200, DEDUCTION))
    sleeps: list[float] = []
    async with make_async_client(service, sleeps, backoff_seconds=0.1) as client:
        deduction = await client.deduct(42, "wa_broadcast", "wa_marketing_id", "wamid.1", 1, "1029384756")

    assert deduction.deduction_id == 7
    assert len({request.content for request in service.requests}) == 1
    assert sleeps == pytest.approx([0.05, 0.1])


async def test_async_client_exhausts_retries_into_a_transport_error() -> None:
    service = Service(fail(httpx.ConnectTimeout))
    async with make_async_client(service, max_retries=3) as client:
        with pytest.raises(TransportError):
            await client.balance(42)
    assert len(service.requests) == 4


@pytest.mark.parametrize(("status", "code", "expected"), ERROR_CASES)
async def test_async_client_raises_the_same_exception_for_each_error_code(
    status: int, code: str, expected: type[WabapoolError]
) -> None:
    service = Service(error(status, code))
    async with make_async_client(service) as client:
        with pytest.raises(expected):
            await client.refund(42, "wamid.1", "refund-1")
    assert len(service.requests) == 1
