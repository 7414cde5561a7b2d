"""The run-out forecast's basis (read once a day per company) and the `balance_forecast_low` warning.

The basis is the daily roll-up of the last completed days (`domain.forecast`):
past days do not change (a refund counts on its own day), so `SpendBases`
keeps each company's basis for its local day and a balance read projects it
with no query. Entries also expire after `BASIS_TTL_SECONDS`, so a deduction
that committed just after midnight with the previous day's date is counted
within minutes.

`balance_forecast_low` is decided by the worker (`warn_forecast_low`), not in
the deduction's transaction. The warning looks days ahead and its basis moves
once a day, so a sweep every few minutes says it in time; in the deduction it
would add a roll-up read to every group on the hot path for an answer that
changes with the date, not with the deduction. Once per cycle is held by the
outbox's dedup key (package scope and cycle), however many workers sweep.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain import forecast, operations
from wabapool.domain.events import DomainEvent, EventType
from wabapool.domain.forecast import SpendBasis
from wabapool.service.alert_settings import settings_of
from wabapool.service.context import ServiceContext
from wabapool.storage import companies as company_store
from wabapool.storage import ledger as ledger_store
from wabapool.storage import pools as pool_store
from wabapool.storage import usage as usage_store

# A process keeps the bases of this many companies (one day each); the least recently read fall out.
BASES_MAX_COMPANIES = 10_000
# How long a basis is trusted: a group that began before local midnight may commit just after it.
BASIS_TTL_SECONDS = 300.0
# Companies one sweep looks at; the rest wait for the next sweep (it starts again from the lowest ids).
SWEEP_MAX_COMPANIES = 5_000


async def read_basis(connection: AsyncConnection, company_id: int, *, today: date) -> SpendBasis:
    """The basis from the roll-up: the completed days of the window since the company's first day."""
    company = await company_store.get_company(connection, company_id)
    if company is None:
        return forecast.NO_BASIS
    first_day = forecast.local_today(company.created_at, company.timezone)
    window = forecast.basis_window(today, first_day)
    if window is None:
        return forecast.NO_BASIS
    rows = await usage_store.daily_usage(
        connection, company_id=company_id, first_day=window[0], last_day=window[1], waba_id=None
    )
    return forecast.spend_basis(
        [(row.day, row.waba_id, row.spent_minor) for row in rows], today=today, first_day=first_day
    )


class SpendBases:
    """Each company's basis for its local day, read once (per `BASIS_TTL_SECONDS`) and kept per process."""

    def __init__(self, context: ServiceContext, *, max_companies: int = BASES_MAX_COMPANIES) -> None:
        self._context = context
        self._max_companies = max_companies
        self._known: OrderedDict[int, tuple[date, float, SpendBasis]] = OrderedDict()

    async def basis(self, company_id: int, *, today: date) -> SpendBasis:
        known = self._known.get(company_id)
        now = time.monotonic()
        if known is not None and known[0] == today and now - known[1] < BASIS_TTL_SECONDS:
            self._known.move_to_end(company_id)
            return known[2]
        async with self._context.database.read() as connection:
            found = await read_basis(connection, company_id, today=today)
        self._known[company_id] = (today, now, found)
        self._known.move_to_end(company_id)
        while len(self._known) > self._max_companies:
            self._known.popitem(last=False)
        return found


def forecast_low_event(state: operations.PoolState, found: forecast.Forecast, warning_days: int) -> DomainEvent:
    """`balance_forecast_low` of one package: its figures, the forecast, once per package and cycle."""
    payload = {
        "company_id": state.company_id,
        **({} if state.waba_id is None else {"waba_id": state.waba_id}),
        "cycle": state.cycle_label,
        "cycle_ends_at": state.cycle_end.isoformat(),
        "total": state.buckets.total,
        "available": state.buckets.available,
        "runs_out_at": None if found.runs_out_at is None else found.runs_out_at.isoformat(),
        "daily_spend": found.daily_spend_minor,
        "basis_days": found.basis_days,
        "forecast_warning_days": warning_days,
    }
    return DomainEvent(EventType.BALANCE_FORECAST_LOW, payload, dedup_key=f"{state.scope}:{state.cycle_label}")


async def warn_forecast_low(context: ServiceContext, *, at: datetime) -> int:
    """Raise `balance_forecast_low` for every package whose money runs out too early; returns events raised."""
    async with context.database.read() as connection:
        # A day wider than the window: the companies' timezones differ from UTC by at most 14 h.
        since = (at - timedelta(days=forecast.BASIS_DAYS + 1)).date()
        company_ids = await usage_store.companies_with_usage_since(
            connection, first_day=since, limit=SWEEP_MAX_COMPANIES
        )
    raised = 0
    for company_id in company_ids:
        raised += await _warn_company(context, company_id, at=at)
    return raised


async def _warn_company(context: ServiceContext, company_id: int, *, at: datetime) -> int:
    async with context.database.transaction() as connection:
        company = await company_store.get_company(connection, company_id)
        if company is None:
            return 0
        warning_days = settings_of(company).forecast_warning_days
        today = at.astimezone(ZoneInfo(company.timezone)).date()
        basis = await read_basis(connection, company_id, today=today)
        if basis.total_minor <= 0:
            return 0
        packages = await pool_store.company_packages(connection, company_id, for_update=False)
        wabas = await company_store.list_wabas(connection, company_id)
        events = []
        for package in packages:
            state = operations.catch_up(package.state, at).state
            charging = [w.waba_id for w in wabas if w.organization_package_id == package.package_id]
            found = forecast.project(
                basis.only(charging), available_minor=state.buckets.available, as_of=at, cycle_end=state.cycle_end
            )
            if forecast.warns(found, cycle_end=state.cycle_end, warning_days=warning_days):
                events.append(forecast_low_event(state, found, warning_days))
        if events:
            await ledger_store.emit_events(connection, company_id=company_id, events=events, at=at)
    return len(events)
