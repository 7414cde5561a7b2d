"""The company's API (bearer JWT): balance, usage, events, logs, CSV export, preferences. The company is the token's."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import StringConstraints

from wabapool.api import schemas
from wabapool.api.deps import Context, require
from wabapool.api.errors import ApiError, error_responses
from wabapool.domain.errors import BillingError, Rejection
from wabapool.security import Permission, Principal, allowed, mask_name, mask_phone
from wabapool.service.reports import LogFilter, LogRow, csv_header, csv_lines

router = APIRouter(tags=["public"])

BalanceReader = Annotated[Principal, Depends(require(Permission.VIEW_BILLING_INFO))]
LogReader = Annotated[Principal, Depends(require(Permission.VIEW_DEDUCTION_LOGS))]
# The SPEC's role table grants billing_events to exactly the roles that read the logs.
EventReader = Annotated[Principal, Depends(require(Permission.VIEW_DEDUCTION_LOGS))]
PreferenceReader = Annotated[Principal, Depends(require(Permission.READ_PREFERENCES))]
PreferenceWriter = Annotated[Principal, Depends(require(Permission.WRITE_PREFERENCES))]
WabaQuery = Annotated[str | None, Query(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_-]+$")]
TimeQuery = Annotated[schemas.Timestamp | None, Query(description="ISO 8601 with a timezone.")]
_UNSAFE_FILENAME = re.compile(r"[^0-9A-Za-z._-]")


@router.get("/billings/info", response_model=schemas.BillingInfoOut, responses=error_responses(401, 403, 404, 422, 503))
async def billing_info(principal: BalanceReader, context: Context) -> JSONResponse:
    """The shared pool with its buckets, thresholds, cycle and per-WABA spend (cached, see `stale`)."""
    try:
        body, stale = await context.balances.get(principal.company_id)
    except TimeoutError as exc:
        raise ApiError(
            503, "unavailable", "the balance could not be read in time; retry shortly", headers={"Retry-After": "1"}
        ) from exc
    return JSONResponse({**body, "stale": stale})


def _filters(
    waba_id: str | None,
    since: datetime | None,
    until: datetime | None,
    category: str | None = None,
    broadcast_id: str | None = None,
) -> LogFilter:
    for name, value in (("from", since), ("to", until)):
        if value is not None and value.tzinfo is None:
            raise BillingError(Rejection.INVALID_REQUEST, f"{name} needs a timezone", {"field": name})
    if since is not None and until is not None and since > until:
        raise BillingError(Rejection.INVALID_REQUEST, "from is after to", {"field": "from"})
    return LogFilter(waba_id=waba_id, since=since, until=until, category=category, broadcast_id=broadcast_id)


def _row(row: LogRow, *, show_waba_id: bool, unmasked: bool) -> dict[str, Any]:
    body = asdict(row)
    body["created_at"] = row.created_at.isoformat()
    if not show_waba_id:
        del body["waba_id"], body["waba_name"]
    if not unmasked:
        body["customer_name"] = mask_name(row.customer_name)
        body["phone_number"] = mask_phone(row.phone_number)
    return body


@router.get("/mcc_logs", response_model=schemas.LogPageOut, responses=error_responses(400, 401, 403, 404))
async def mcc_logs(
    principal: LogReader,
    context: Context,
    waba_id: WabaQuery = None,
    since: Annotated[TimeQuery, Query(alias="from")] = None,
    until: Annotated[TimeQuery, Query(alias="to")] = None,
    category: Annotated[Annotated[str, StringConstraints(max_length=48), schemas.NoNul] | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JSONResponse:
    """Deduction logs, newest first, keyset-paginated; `waba_id` only when the company shows it."""
    page = await context.reports.logs(
        principal.company_id, _filters(waba_id, since, until, category), cursor=cursor, limit=limit
    )
    unmasked = allowed(principal.role, Permission.VIEW_PERSONAL_DATA)
    rows = [_row(r, show_waba_id=page.show_waba_id, unmasked=unmasked) for r in page.rows]
    return JSONResponse({"data": rows, "next_cursor": page.next_cursor})


@router.get(
    "/download_broadcast_deduction",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "CSV, streamed"},
        **error_responses(400, 401, 403, 404),
    },
)
async def download_broadcast_deduction(
    principal: LogReader,
    context: Context,
    broadcast_id: Annotated[
        Annotated[str, StringConstraints(min_length=1, max_length=64), schemas.NoNul] | None, Query()
    ] = None,
    since: Annotated[TimeQuery, Query(alias="from")] = None,
    until: Annotated[TimeQuery, Query(alias="to")] = None,
    waba_id: WabaQuery = None,
    category: Annotated[Annotated[str, StringConstraints(max_length=48), schemas.NoNul] | None, Query()] = None,
) -> StreamingResponse:
    """The deduction logs as CSV; a `WABA ID` column only when the company shows it."""
    filters = _filters(waba_id, since, until, category, broadcast_id=broadcast_id)
    show_waba_id, currency, pages = await context.reports.export_pages(principal.company_id, filters)
    unmasked = allowed(principal.role, Permission.VIEW_PERSONAL_DATA)

    async def body() -> AsyncIterator[str]:
        yield csv_header(show_waba_id)
        async for page in pages:
            rows = [_row(r, show_waba_id=True, unmasked=unmasked) | {"created_at": r.created_at} for r in page]
            yield csv_lines(rows, show_waba_id=show_waba_id, currency=currency)

    # The broadcast id is free text; a header value is latin-1 and the filename sits in quotes.
    name = f"deductions-{_UNSAFE_FILENAME.sub('_', broadcast_id) if broadcast_id else 'all'}.csv"
    return StreamingResponse(
        body(), media_type="text/csv; charset=utf-8", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


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
    return moment


DayQuery = Annotated[
    str | None,
    Query(
        max_length=40,
        description="YYYY-MM-DD in the company timezone (both ends included), or an ISO 8601 time with a timezone.",
    ),
]


@router.get("/usage", response_model=schemas.UsageOut, responses=error_responses(400, 401, 403, 404))
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


@router.get(
    "/billing_events", response_model=schemas.BillingEventPageOut, responses=error_responses(400, 401, 403, 404)
)
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


@router.get("/billing_preferences", response_model=schemas.PreferencesOut, responses=error_responses(401, 403, 404))
async def get_preferences(principal: PreferenceReader, context: Context) -> dict[str, bool]:
    """The company's report preferences."""
    return await context.reports.preferences(principal.company_id)


@router.put(
    "/billing_preferences", response_model=schemas.PreferencesOut, responses=error_responses(400, 401, 403, 404)
)
async def put_preferences(
    body: schemas.PreferencesIn, principal: PreferenceWriter, context: Context
) -> dict[str, bool]:
    """Change the company's report preferences (owner and admin)."""
    return await context.reports.set_preferences(principal.company_id, show_waba_id=body.show_waba_id)
