"""The company's API (bearer JWT): balance, usage, events, logs, CSV export, preferences. The company is the token's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import StringConstraints
from starlette.types import Receive, Scope, Send

from wabapool.api.balance import BillingInfoBody, WabaBody, with_forecast
from wabapool.api.balance import billing_info as balance_json
from wabapool.api.context import AppContext
from wabapool.api.deps import Context, require
from wabapool.api.errors import ApiError, error_responses
from wabapool.api.schemas.billing_info import BillingInfoOut
from wabapool.api.schemas.fields import NoNul
from wabapool.api.schemas.reports import BillingEventPageOut, LogPageOut, PreferencesIn, PreferencesOut, UsageOut
from wabapool.domain import forecast
from wabapool.domain.errors import BillingError, Rejection
from wabapool.masking import mask_name, mask_phone
from wabapool.security import Permission, Principal, allowed
from wabapool.service.reports import Export, LogFilter, LogRow
from wabapool.service.reports import csv as csv_format

# Every route here takes a bearer token, and every token request passes the rate limits (api/deps.py).
router = APIRouter(tags=["public"], responses=error_responses(429))

BalanceReader = Annotated[Principal, Depends(require(Permission.VIEW_BILLING_INFO))]
LogReader = Annotated[Principal, Depends(require(Permission.VIEW_DEDUCTION_LOGS))]
# The SPEC's role table grants billing_events to exactly the roles that read the logs.
EventReader = Annotated[Principal, Depends(require(Permission.VIEW_DEDUCTION_LOGS))]
PreferenceReader = Annotated[Principal, Depends(require(Permission.READ_PREFERENCES))]
PreferenceWriter = Annotated[Principal, Depends(require(Permission.WRITE_PREFERENCES))]
WabaQuery = Annotated[str | None, Query(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_-]+$")]


@router.get("/billings/info", response_model=BillingInfoOut, responses=error_responses(401, 403, 404, 422, 503))
async def billing_info(principal: BalanceReader, context: Context) -> JSONResponse:
    """The shared pool with its buckets, thresholds, cycle and per-WABA spend (cached, see `stale`)."""
    try:
        view, stale = await context.balances.get(principal.company_id)
    except TimeoutError as exc:
        raise ApiError(
            503, "unavailable", "the balance could not be read in time; retry shortly", headers={"Retry-After": "1"}
        ) from exc
    body = balance_json(view)
    if not allowed(principal.role, Permission.READ_SPEND_CAPS):
        body = {**body, "wabas": [_without_cap(waba) for waba in body["wabas"]]}
    return JSONResponse({**await _with_forecast(context, principal.company_id, body), "stale": stale})


async def _with_forecast(context: AppContext, company_id: int, body: BillingInfoBody) -> BillingInfoBody:
    """The forecast, projected from the cached figures at their `as_of` with the day's basis (no log scan)."""
    as_of = datetime.fromisoformat(body["as_of"]) if body["as_of"] else datetime.now(UTC)
    today = forecast.local_today(as_of, body["timezone"] or "UTC")
    return with_forecast(body, await context.service.spend_basis(company_id, today=today), as_of=as_of)


def _without_cap(waba: WabaBody) -> WabaBody:
    """A WABA entry as agents and members see it: without its spending cap."""
    shown = waba.copy()
    shown.pop("spend_cap", None)
    shown.pop("cap_spent", None)
    return shown


def _day_or_time(name: str, value: str | None) -> date | datetime | None:
    """`YYYY-MM-DD` (a day in the company timezone) or an ISO 8601 time with a timezone (its day there)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BillingError(
            Rejection.INVALID_REQUEST, f"{name} is YYYY-MM-DD or an ISO 8601 time", {"field": name}
        ) from exc
    if moment.tzinfo is None:
        raise BillingError(Rejection.INVALID_REQUEST, f"{name} needs a timezone", {"field": name})
    try:
        moment.astimezone(UTC)
    except OverflowError as exc:
        raise BillingError(Rejection.INVALID_REQUEST, f"{name} is out of range", {"field": name}) from exc
    return moment


DayQuery = Annotated[
    str | None,
    Query(
        max_length=40,
        description="YYYY-MM-DD in the company timezone (both ends included), or an ISO 8601 time with a timezone.",
    ),
]


def _filters(
    *,
    waba_id: str | None,
    since: str | None,
    until: str | None,
    category: str | None,
    broadcast_id: str | None,
    phone_number: str | None,
) -> LogFilter:
    start = _day_or_time("from", since)
    end = _day_or_time("to", until)
    if isinstance(start, datetime) and isinstance(end, datetime) and start > end:
        raise BillingError(Rejection.INVALID_REQUEST, "from is after to", {"field": "from"})
    return LogFilter(
        waba_id=waba_id,
        since=start,
        until=end,
        category=category,
        broadcast_id=broadcast_id,
        phone_number=phone_number,
    )


def _log_row(row: LogRow, *, show_waba_id: bool, unmasked: bool) -> dict[str, object]:
    body: dict[str, object] = {
        "kind": row.kind,
        "deduction_id": row.deduction_id,
        "refund_id": row.refund_id,
        "created_at": row.created_at.isoformat(),
        "unique_code": row.unique_code,
    }
    if show_waba_id:
        body["waba_id"] = row.waba_id
        body["waba_name"] = row.waba_name
    body |= {
        "broadcast_id": row.broadcast_id,
        "message_id": row.message_id,
        "category": row.category,
        "deduction_code": row.deduction_code,
        "quantity": row.quantity,
        "unit_price": row.unit_price,
        "amount": row.amount,
        "credited_to": row.credited_to,
        "allocations": row.allocations,
        "balance_after": row.balance_after,
        "customer_name": row.customer_name if unmasked else mask_name(row.customer_name),
        "phone_number": row.phone_number if unmasked else mask_phone(row.phone_number),
        "refunded": row.refunded,
    }
    return body


CategoryQuery = Annotated[Annotated[str, StringConstraints(min_length=1, max_length=48), NoNul] | None, Query()]
BroadcastQuery = Annotated[Annotated[str, StringConstraints(min_length=1, max_length=64), NoNul] | None, Query()]
PhoneQuery = Annotated[
    Annotated[str, StringConstraints(min_length=1, max_length=32), NoNul] | None,
    Query(description="Exact match, however written (+62 812-…, 62812…, 0062812…): compared as E.164."),
]


@router.get("/mcc_logs", response_model=LogPageOut, responses=error_responses(400, 401, 403, 404))
async def mcc_logs(
    principal: LogReader,
    context: Context,
    waba_id: WabaQuery = None,
    since: Annotated[DayQuery, Query(alias="from")] = None,
    until: Annotated[DayQuery, Query(alias="to")] = None,
    category: CategoryQuery = None,
    broadcast_id: BroadcastQuery = None,
    phone_number: PhoneQuery = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JSONResponse:
    """Deductions and refunds (rows of their own), newest first, keyset-paginated; `waba_id` only when shown."""
    filters = _filters(
        waba_id=waba_id,
        since=since,
        until=until,
        category=category,
        broadcast_id=broadcast_id,
        phone_number=phone_number,
    )
    page = await context.reports.logs(principal.company_id, filters, cursor=cursor, limit=limit)
    unmasked = allowed(principal.role, Permission.VIEW_PERSONAL_DATA)
    rows = [_log_row(r, show_waba_id=page.show_waba_id, unmasked=unmasked) for r in page.rows]
    return JSONResponse({"data": rows, "next_cursor": page.next_cursor})


def _local_day(value: date | datetime | None, timezone: str) -> date | None:
    if value is None or not isinstance(value, datetime):
        return value
    return value.astimezone(ZoneInfo(timezone)).date()


@router.get(
    "/download_broadcast_deduction",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "CSV (UTF-8 with BOM), streamed; columns in the README"},
        **error_responses(400, 401, 403, 404, 429),
    },
)
async def download_broadcast_deduction(
    principal: LogReader,
    context: Context,
    broadcast_id: BroadcastQuery = None,
    since: Annotated[DayQuery, Query(alias="from")] = None,
    until: Annotated[DayQuery, Query(alias="to")] = None,
    waba_id: WabaQuery = None,
    category: CategoryQuery = None,
    phone_number: PhoneQuery = None,
) -> StreamingResponse:
    """The logs of the filter as CSV; a `WABA ID` column only when the company shows it."""
    filters = _filters(
        waba_id=waba_id,
        since=since,
        until=until,
        category=category,
        broadcast_id=broadcast_id,
        phone_number=phone_number,
    )
    unmasked = allowed(principal.role, Permission.VIEW_PERSONAL_DATA)
    export = await context.reports.export(principal.company_id, filters, unmasked=unmasked)
    name = csv_format.filename(
        export.company_id,
        broadcast_id=broadcast_id,
        first_day=_local_day(filters.since, export.timezone),
        last_day=_local_day(filters.until, export.timezone),
    )
    return ExportResponse(
        export,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


class ExportResponse(StreamingResponse):
    """The export's bytes; the export is closed however the response ends (its slot and pipeline freed)."""

    def __init__(self, export: Export, *, media_type: str, headers: Mapping[str, str]) -> None:
        super().__init__(export.body(), media_type=media_type, headers=headers)
        self.export = export

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.export.close()


@router.get("/usage", response_model=UsageOut, responses=error_responses(400, 401, 403, 404))
async def usage(
    principal: BalanceReader,
    context: Context,
    since: Annotated[DayQuery, Query(alias="from")] = None,
    until: Annotated[DayQuery, Query(alias="to")] = None,
    waba_id: WabaQuery = None,
) -> JSONResponse:
    """Spend and messages per day (company timezone) and per WABA, from the daily roll-up; default this cycle."""
    series = await context.reports.usage(
        principal.company_id,
        since=_day_or_time("from", since),
        until=_day_or_time("to", until),
        waba_id=waba_id,
    )
    days = [
        {
            "date": day.day.isoformat(),
            "amount": day.amount,
            "messages": day.messages,
            "by_waba": [asdict(w) for w in day.by_waba],
        }
        for day in series.days
    ]
    return JSONResponse({"currency": series.currency, "days": days})


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@router.get("/billing_events", response_model=BillingEventPageOut, responses=error_responses(400, 401, 403, 404))
async def billing_events(
    principal: EventReader,
    context: Context,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JSONResponse:
    """The company's events (alert history) with their webhook delivery state, newest first."""
    page = await context.reports.events(principal.company_id, cursor=cursor, limit=limit)
    rows = [
        {
            "id": row.id,
            "type": row.type,
            "created_at": row.created_at.isoformat(),
            "data": row.data,
            "delivery": {
                "state": row.delivery.state,
                "attempts": row.delivery.attempts,
                "delivered_at": _time(row.delivery.delivered_at),
                "next_attempt_at": _time(row.delivery.next_attempt_at),
                "last_error": row.delivery.last_error,
            },
        }
        for row in page.rows
    ]
    return JSONResponse({"data": rows, "next_cursor": page.next_cursor})


@router.get("/billing_preferences", response_model=PreferencesOut, responses=error_responses(401, 403, 404))
async def get_preferences(principal: PreferenceReader, context: Context) -> dict[str, bool]:
    """The company's report preferences."""
    return await context.reports.preferences(principal.company_id)


@router.put("/billing_preferences", response_model=PreferencesOut, responses=error_responses(400, 401, 403, 404))
async def put_preferences(body: PreferencesIn, principal: PreferenceWriter, context: Context) -> dict[str, bool]:
    """Change the company's report preferences (owner and admin)."""
    return await context.reports.set_preferences(principal.company_id, show_waba_id=body.show_waba_id)
