"""The company's own alerts, auto-recharge and forecast warning: read, checked, changed.

Set by owners and admins (public `balance_alerts`) and by provisioning (`PUT
/iag/v1/companies/N`), checked by the same domain rules (`domain.alerts`) on
both paths. A setting left out keeps its value. The settings live on the
company row, which every deduction reads with its locked package, so a change
applies from the next deduction on; where a package stands with the alerts
(fired, open request) is the package's and is not touched here.
"""

from __future__ import annotations

from wabapool.domain import alerts, forecast
from wabapool.domain.errors import BillingError, Rejection
from wabapool.service.context import ServiceContext
from wabapool.service.models import KEEP, AlertSettings, Keep
from wabapool.service.reports.companies import company_of
from wabapool.storage import companies as company_store
from wabapool.storage.types import Record


def settings_of(company: Record) -> AlertSettings:
    """A company row's settings (stored as checked; NULLs are the defaults)."""
    days = company.forecast_warning_days
    return AlertSettings(
        alerts.parse_alerts(company.balance_alerts or []),
        alerts.parse_auto_recharge(company.auto_recharge),
        forecast.DEFAULT_WARNING_DAYS if days is None else days,
    )


def check_warning_days(value: object, *, field_name: str = "forecast_warning_days") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= forecast.MAX_WARNING_DAYS:
        raise BillingError(
            Rejection.INVALID_REQUEST,
            f"forecast_warning_days is 0..{forecast.MAX_WARNING_DAYS}",
            {"field": field_name},
        )
    return value


def settings_values(
    *,
    balance_alerts: object | Keep = KEEP,
    auto_recharge: object | Keep = KEEP,
    forecast_warning_days: object | Keep = KEEP,
    prefix: str = "",
) -> dict[str, object]:
    """The company columns a change writes, each checked by the domain rules; raises `invalid_request`."""
    values: dict[str, object] = {}
    if balance_alerts is not KEEP:
        parsed = alerts.parse_alerts(balance_alerts, field_name=f"{prefix}alerts")
        values["balance_alerts"] = [alert.as_dict() for alert in parsed]
    if auto_recharge is not KEEP:
        setting = alerts.parse_auto_recharge(auto_recharge, field_name=f"{prefix}auto_recharge")
        values["auto_recharge"] = None if setting is None else setting.as_dict()
    if forecast_warning_days is not KEEP:
        values["forecast_warning_days"] = check_warning_days(
            forecast_warning_days, field_name=f"{prefix}forecast_warning_days"
        )
    return values


def _unknown() -> BillingError:
    return BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")


async def get_settings(context: ServiceContext, company_id: int) -> AlertSettings:
    async with context.database.read() as connection:
        company = await company_store.get_company(connection, company_id)
    if company is None:
        raise _unknown()
    return settings_of(company)


async def set_settings(
    context: ServiceContext,
    company_id: int,
    *,
    balance_alerts: object | Keep = KEEP,
    auto_recharge: object | Keep = KEEP,
    forecast_warning_days: object | Keep = KEEP,
) -> AlertSettings:
    """Change what is given (checked first: nothing is written on a bad value); returns the settings now."""
    values = settings_values(
        balance_alerts=balance_alerts, auto_recharge=auto_recharge, forecast_warning_days=forecast_warning_days
    )
    async with context.database.transaction() as connection:
        company = await company_store.get_company(connection, company_id)
        if company is None:
            raise _unknown()
        if values:
            await company_store.update_company(connection, company_id, **values)
            company = await company_of(connection, company_id)
    await context.changed(company_id)
    return settings_of(company)
