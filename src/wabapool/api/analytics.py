"""The page's analytics sink: `POST /api/core/v1/analytics/events`, an allow-list of event names, counted in /metrics.

Each allowed name has its own closed set of properties, so a browser cannot grow the metric's label set or
smuggle free text (personal data) into it. An unknown name or property is a 400 in the one envelope.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wabapool.api.deps import require
from wabapool.api.errors import ApiError, error_responses
from wabapool.metrics import ANALYTICS_EVENTS
from wabapool.security import Permission, Principal

# Every route here takes a bearer token, and every token request passes the rate limits (api/deps.py).
router = APIRouter(tags=["public"], responses=error_responses(429))

# Everyone who may open the page may report what they did on it.
PageUser = Annotated[Principal, Depends(require(Permission.VIEW_BILLING_INFO))]


class TooltipOpened(BaseModel):
    """`billing_shared_balance_tooltip_opened`: which pool model the company has and how the tooltip was opened."""

    model_config = ConfigDict(extra="forbid")
    billing_version: Literal["v2", "v3"]
    trigger: Literal["hover", "focus", "click"]


# The allow-list: event name -> the model its properties must satisfy.
ALLOWED_EVENTS: dict[str, type[BaseModel]] = {
    "billing_shared_balance_tooltip_opened": TooltipOpened,
}


class AnalyticsEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=64, description=f"One of {sorted(ALLOWED_EVENTS)}.")]
    properties: dict[str, object] = Field(default_factory=dict)


class AnalyticsEventOut(BaseModel):
    accepted: bool


@router.post(
    "/analytics/events",
    status_code=202,
    response_model=AnalyticsEventOut,
    responses=error_responses(400, 401, 403),
)
async def record_event(body: AnalyticsEventIn, principal: PageUser) -> JSONResponse:
    """Count one analytics event from the page (allow-listed name, closed properties)."""
    model = ALLOWED_EVENTS.get(body.name)
    if model is None:
        # The name is not echoed: it is the browser's free text (it could carry anything, personal data too).
        raise ApiError(400, "unknown_event", "this analytics event name is not allowed", {"field": "name"})
    try:
        properties = model.model_validate(body.properties)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(part) for part in error["loc"]), "problem": error["msg"]}
            for error in exc.errors()[:20]
        ]
        raise ApiError(400, "validation_error", "the event's properties are not valid", {"errors": problems}) from exc
    fields = properties.model_dump()
    ANALYTICS_EVENTS.labels(
        name=body.name, billing_version=fields.get("billing_version", ""), trigger=fields.get("trigger", "")
    ).inc()
    return JSONResponse({"accepted": True}, status_code=202)
