"""`GET|PUT /api/core/v1/balance_alerts`, and the wire shape of the alert settings (also for provisioning)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from wabapool.api.deps import Context, require
from wabapool.api.errors import error_responses
from wabapool.api.schemas.companies import BalanceAlertsIn, BalanceAlertsOut
from wabapool.security import Permission, Principal, allowed
from wabapool.service.models import KEEP, AlertSettings, Keep

router = APIRouter(tags=["public"])

AlertReader = Annotated[Principal, Depends(require(Permission.READ_BALANCE_ALERTS))]
AlertWriter = Annotated[Principal, Depends(require(Permission.WRITE_BALANCE_ALERTS))]


def _plain(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def alert_fields(body: BaseModel, *, alerts_field: str) -> dict[str, object | Keep]:
    """The settings a body gives, as plain data for the service's checks; a field left out is KEEP.

    `alerts: null` is the same as `[]` (no alerts); `auto_recharge: null` turns it off.
    """
    given = body.model_fields_set
    alerts = getattr(body, alerts_field)
    return {
        "balance_alerts": (_plain(alerts) or []) if alerts_field in given else KEEP,
        "auto_recharge": _plain(body.auto_recharge) if "auto_recharge" in given else KEEP,  # type: ignore[attr-defined]
        "forecast_warning_days": body.forecast_warning_days  # type: ignore[attr-defined]
        if "forecast_warning_days" in given and body.forecast_warning_days is not None  # type: ignore[attr-defined]
        else KEEP,
    }


def settings_body(settings: AlertSettings, *, alerts_field: str) -> dict[str, object]:
    plain = settings.as_dict()
    return {alerts_field: plain.pop("alerts"), **plain}


@router.get("/balance_alerts", response_model=BalanceAlertsOut, responses=error_responses(401, 403, 404))
async def get_balance_alerts(principal: AlertReader, context: Context) -> dict[str, object]:
    """The company's own alerts and auto-recharge (owner, admin, supervisor)."""
    settings = await context.service.alert_settings(principal.company_id)
    return {**settings_body(settings, alerts_field="alerts"), "editable": _editable(principal)}


@router.put("/balance_alerts", response_model=BalanceAlertsOut, responses=error_responses(400, 401, 403, 404, 422))
async def put_balance_alerts(body: BalanceAlertsIn, principal: AlertWriter, context: Context) -> dict[str, object]:
    """Change the company's alerts and auto-recharge (owner and admin); a field left out keeps its value."""
    settings = await context.service.set_alert_settings(
        principal.company_id, **alert_fields(body, alerts_field="alerts")
    )
    return {**settings_body(settings, alerts_field="alerts"), "editable": True}


def _editable(principal: Principal) -> bool:
    """Whether this reader may change the settings: the page shows them read-only otherwise."""
    return allowed(principal.role, Permission.WRITE_BALANCE_ALERTS)
