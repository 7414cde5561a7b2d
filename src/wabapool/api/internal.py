"""The service-to-service API (X-Api-Key): deductions, refunds, payments, provisioning, cache."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from pydantic_core import to_json  # 3-4x json.dumps on these bodies (measured), and already here

from wabapool.api import spend_caps
from wabapool.api.alerts import alert_fields, settings_body
from wabapool.api.balance import balance_object
from wabapool.api.context import AppContext
from wabapool.api.deps import Context, Provisioner, Reader, Refunder, Settler, TopUpper, scoped_caller
from wabapool.api.errors import ApiError, billing_error_body, error_responses
from wabapool.api.observability import record_batch, record_deduction
from wabapool.api.schemas.billing_info import BalanceOut
from wabapool.api.schemas.companies import (
    CompanyIn,
    CompanyOut,
    InvalidatedOut,
    PackageIn,
    PriceIn,
    PriceOut,
    WabaIn,
    WabaOut,
    WebhookIn,
    WebhookOut,
)
from wabapool.api.schemas.fields import WABA_ID_PATTERN, Identifier, Strict
from wabapool.api.schemas.money import (
    BatchIn,
    BatchOut,
    DeductionIn,
    DeductionOut,
    PaymentIn,
    PaymentOut,
    RefundIn,
    RefundOut,
)
from wabapool.domain import limits
from wabapool.domain.errors import BillingError, Rejection
from wabapool.security import Scope
from wabapool.service import CompanyTerms, DeductionRequest, PackageTerms, RefundRequest
from wabapool.service.models import KEEP, Allocation, BatchItemResult, DeductionResult, FundingResult
from wabapool.service.ssrf import UnsafeUrl, UrlGuard

router = APIRouter(tags=["internal"])
BodyModel = TypeVar("BodyModel", bound=Strict)
CompanyPath = Path(gt=0, le=2**63 - 1)
WabaPath = Path(min_length=1, max_length=32, pattern=WABA_ID_PATTERN)
# A deduction code reaches the CSV: the same rule as in bodies (`domain.identifiers`).
CodePath = Annotated[str, Path(min_length=1, max_length=limits.CODE_MAX_LENGTH), Identifier]


def _internal_caller(request: Request, scope: Scope) -> tuple[AppContext, str]:
    """The X-Api-Key check of the hot endpoints, inline (see `deduct`)."""
    context: AppContext = request.app.state.context
    caller = scoped_caller(context, request.headers.get("x-api-key"), scope)
    request.state.caller = caller
    return context, caller


def _parse(model: type[BodyModel], raw: bytes) -> BodyModel:
    """pydantic-core straight from bytes; errors go to the one validation envelope."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from exc


def _request(item: DeductionIn) -> DeductionRequest:
    extra = item.extra_attrs
    return DeductionRequest(
        company_id=item.company_id,
        billing_code=item.billing_code,
        deduction_code=item.deduction_code,
        unique_code=item.unique_code,
        quantity=item.quantity,
        waba_id=extra.waba_id,
        broadcast_id=extra.broadcast_id,
        message_id=extra.message_id,
        category=extra.category,
        customer_name=extra.customer_name,
        phone_number=extra.phone_number,
    )


def _allocations(allocations: tuple[Allocation, ...]) -> list[dict[str, object]]:
    return [{"credited_to": a.credited_to, "quota_type": a.quota_type, "amount": a.amount} for a in allocations]


def deduction_body(result: DeductionResult) -> dict[str, object]:
    return {
        "deduction_id": result.deduction_id,
        "unique_code": result.unique_code,
        "amount": result.amount,
        "value_before": result.value_before,
        "value_after": result.value_after,
        "credited_to": result.credited_to,
        "allocations": _allocations(result.allocations),
        "replayed": result.replayed,
    }


def _batch_item(outcome: BatchItemResult) -> dict[str, object]:
    body: dict[str, object] = {"unique_code": outcome.unique_code, "status": outcome.status}
    if outcome.error is not None:
        body["error"] = billing_error_body(outcome.error)
    if outcome.result is not None:
        body |= deduction_body(outcome.result)
    return body


def _payment_body(result: FundingResult) -> dict[str, object]:
    return {
        "payment_id": result.payment_id,
        "payment_reference": result.payment_reference,
        "amount": result.amount,
        "value_before": result.value_before,
        "value_after": result.value_after,
        "allocations": _allocations(result.allocations),
        "replayed": result.replayed,
    }


@router.post(
    "/quota-managements/deduction",
    response_model=DeductionOut,
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DeductionIn"}}},
        },
        "security": [{"APIKeyHeader": []}],
    },
)
async def deduct(request: Request) -> Response:
    """Charge one message to the company's shared pool (idempotent on unique_code).

    The hot path: the body is parsed by pydantic-core straight from bytes and the
    key checked inline, skipping the framework's generic body and dependency
    machinery (measured: it cost more than the deduction itself).
    """
    context, caller = _internal_caller(request, Scope.DEDUCT)
    body = _parse(DeductionIn, await request.body())
    outcome = await context.service.deduct_one(_request(body), service_name=caller)
    record_deduction(outcome)
    return Response(to_json(deduction_body(outcome.unwrap())), media_type="application/json")


@router.post(
    "/quota-managements/deductions",
    response_model=BatchOut,
    responses=error_responses(400, 401, 403, 413, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchIn"}}},
        },
        "security": [{"APIKeyHeader": []}],
    },
)
async def deduct_batch(request: Request) -> Response:
    """Up to 1,000 deductions; one result per item, in request order; a rejected item never fails the others."""
    context, caller = _internal_caller(request, Scope.DEDUCT)
    body = _parse(BatchIn, await request.body())
    if len(body.items) > limits.BATCH_MAX_ITEMS:
        raise ApiError(
            413,
            "payload_too_large",
            f"at most {limits.BATCH_MAX_ITEMS} items per batch",
            {"max_items": limits.BATCH_MAX_ITEMS, "items": len(body.items)},
        )
    outcomes = await context.service.deduct_batch([_request(item) for item in body.items], service_name=caller)
    record_batch(outcomes)
    return Response(to_json({"results": [_batch_item(o) for o in outcomes]}), media_type="application/json")


@router.post(
    "/quota-managements/refund",
    response_model=RefundOut,
    responses=error_responses(400, 401, 403, 404, 409, 422, 503),
)
async def refund(body: RefundIn, context: Context, caller: Refunder) -> JSONResponse:
    """Give a deduction back (message not billable or failed); idempotent on refund_code."""
    result = await context.service.refund(
        RefundRequest(body.company_id, body.unique_code, body.refund_code, body.reason), service_name=caller
    )
    return JSONResponse(
        {
            "refund_id": result.refund_id,
            "unique_code": result.unique_code,
            "refund_code": result.refund_code,
            "amount": result.amount,
            "value_before": result.value_before,
            "value_after": result.value_after,
            "allocations": _allocations(result.allocations),
            "replayed": result.replayed,
        }
    )


@router.post(
    "/quota-managements/top-up",
    response_model=PaymentOut,
    responses=error_responses(400, 401, 403, 404, 409, 422, 503),
)
async def top_up(body: PaymentIn, context: Context, caller: TopUpper) -> JSONResponse:
    """Credit a payment: postpaid use is paid off first, the rest goes to `additional`."""
    result = await context.service.top_up(
        body.company_id,
        amount=body.amount,
        payment_reference=body.payment_reference,
        service_name=caller,
        waba_id=body.waba_id,
    )
    return JSONResponse(_payment_body(result))


@router.post(
    "/quota-managements/settle-postpaid",
    response_model=PaymentOut,
    responses=error_responses(400, 401, 403, 404, 409, 422, 503),
)
async def settle_postpaid(body: PaymentIn, context: Context, caller: Settler) -> JSONResponse:
    """Record the payment of the postpaid bill; idempotent on payment_reference."""
    result = await context.service.settle_postpaid(
        body.company_id,
        amount=body.amount,
        payment_reference=body.payment_reference,
        service_name=caller,
        waba_id=body.waba_id,
    )
    return JSONResponse(_payment_body(result))


@router.put(
    "/quota-managements/{company_id}/invalidate-cache",
    response_model=InvalidatedOut,
    responses=error_responses(400, 401, 403, 503),
)
async def invalidate_cache(context: Context, _: Reader, company_id: int = CompanyPath) -> dict[str, object]:
    """Drop the company's cached balance."""
    await context.balances.invalidate(company_id)
    return {"company_id": company_id, "invalidated": True}


@router.get(
    "/quota-managements/{company_id}/balance",
    response_model=BalanceOut,
    responses=error_responses(400, 401, 403, 404, 422, 503),
)
async def authoritative_balance(context: Context, _: Reader, company_id: int = CompanyPath) -> JSONResponse:
    """The pool read from the database, never from the cache."""
    return JSONResponse(balance_object(await context.service.balance(company_id)))


@router.put("/companies/{company_id}", response_model=CompanyOut, responses=error_responses(400, 401, 403, 409, 503))
async def put_company(
    body: CompanyIn, context: Context, _: Provisioner, company_id: int = CompanyPath
) -> dict[str, object]:
    """Create or update a company and its pool (idempotent); a field left out keeps its value."""
    terms = CompanyTerms(
        billing_version=body.billing_version,
        currency=body.currency,
        timezone=body.timezone,
        package=_package_terms(body.package),
        waba_save_organization_id=body.waba_save_organization_id
        if "waba_save_organization_id" in body.model_fields_set
        else KEEP,
        **alert_fields(body, alerts_field="balance_alerts"),
    )
    company = await context.service.provision_company(company_id, terms)
    return {
        "company_id": company_id,
        "billing_version": company.billing_version,
        "currency": company.currency,
        "timezone": company.timezone,
        "package": _package_body(company.package),
        "waba_save_organization_id": company.waba_save_organization_id,
        **settings_body(company.settings, alerts_field="balance_alerts"),
    }


def _package_terms(package: PackageIn | None) -> PackageTerms | None:
    if package is None:
        return None
    return PackageTerms(
        allowance=package.allowance,
        postpaid_limit=package.postpaid_limit,
        cycle_anchor_day=package.cycle_anchor_day,
        threshold_percent=package.threshold_percent if "threshold_percent" in package.model_fields_set else KEEP,
    )


def _package_body(terms: PackageTerms | None) -> dict[str, object] | None:
    if terms is None:
        return None
    return {
        "allowance": terms.allowance,
        "postpaid_limit": terms.postpaid_limit,
        "cycle_anchor_day": terms.cycle_anchor_day,
        "threshold_percent": terms.threshold_percent,
    }


@router.put(
    "/companies/{company_id}/wabas/{waba_id}",
    response_model=WabaOut,
    responses=error_responses(400, 401, 403, 404, 409, 503),
)
async def put_waba(
    body: WabaIn,
    context: Context,
    service_name: Provisioner,
    company_id: int = CompanyPath,
    waba_id: str = WabaPath,
) -> dict[str, object]:
    """Create or rename a WABA: it joins the company's shared pool, or (v2, or the flag off) has its own package.

    `spend_cap` sets its spending cap (null removes it, left out keeps it), audited as the calling service's.
    """
    waba = await context.service.provision_waba(
        company_id,
        waba_id,
        name=body.name,
        package=_package_terms(body.package),
        spend_cap=spend_caps.cap_from(body.spend_cap) if "spend_cap" in body.model_fields_set else KEEP,
        changed_by=f"service:{service_name}",
    )
    return {
        "company_id": company_id,
        "waba_id": waba_id,
        "name": waba.name,
        "package": _package_body(waba.package),
        "spend_cap": spend_caps.cap_body(waba.spend_cap),
    }


@router.put("/price-list/{deduction_code}", response_model=PriceOut, responses=error_responses(400, 401, 403, 404, 503))
async def put_price(body: PriceIn, context: Context, _: Provisioner, deduction_code: CodePath) -> dict[str, object]:
    """Create or update one price-list entry (a new effective_from is a new row)."""
    effective_from = body.effective_from or context.service.clock()
    if effective_from.tzinfo is None:
        raise BillingError(Rejection.INVALID_REQUEST, "effective_from needs a timezone", {"field": "effective_from"})
    await context.service.set_price(
        deduction_code,
        unit_price_minor=body.unit_price,
        company_id=body.company_id,
        market=body.market,
        effective_from=effective_from,
    )
    return {
        "deduction_code": deduction_code,
        "unit_price": body.unit_price,
        "company_id": body.company_id,
        "market": body.market,
        "effective_from": effective_from,
    }


@router.put(
    "/companies/{company_id}/webhook",
    response_model=WebhookOut,
    responses=error_responses(400, 401, 403, 404, 503),
)
async def put_webhook(
    body: WebhookIn, context: Context, _: Provisioner, company_id: int = CompanyPath
) -> dict[str, object]:
    """Where the company's events are delivered (an https URL reaching a public address) and their secret.

    Without `secret` a Standard Webhooks secret (`whsec_…`) is generated and returned, this once.
    """
    try:
        await UrlGuard(allow_private=context.webhook_allow_private).check(body.url)
    except UnsafeUrl as exc:
        raise ApiError(400, "invalid_request", str(exc), {"field": "url"}) from exc
    secret = await context.service.set_webhook(company_id, url=body.url, secret=body.secret)
    return {"company_id": company_id, "url": body.url, "secret": secret if body.secret is None else None}


@router.delete(
    "/companies/{company_id}/webhook",
    status_code=204,
    response_class=Response,
    responses=error_responses(400, 401, 403, 404, 503),
)
async def delete_webhook(context: Context, _: Provisioner, company_id: int = CompanyPath) -> Response:
    """No webhook any more: the company's later events are kept, marked skipped."""
    await context.service.delete_webhook(company_id)
    return Response(status_code=204)
