"""`PUT /api/core/v1/wabas/{waba_id}/spend_cap`: a WABA's spending cap, set by the company's owners and admins.

The company is the token's; a WABA of another company is 404, as one that
does not exist (never revealing it does). Supervisors read caps in
`billings/info` and are refused here (403), agents and members too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request

from wabapool.api.deps import Context, require
from wabapool.api.errors import error_responses
from wabapool.api.schemas.companies import SpendCapIn, WabaCapOut
from wabapool.domain.caps import SpendCap, make_cap
from wabapool.domain.errors import BillingError, Rejection
from wabapool.security import Permission, Principal
from wabapool.service.models import WabaCap

router = APIRouter(tags=["public"])

CapWriter = Annotated[Principal, Depends(require(Permission.WRITE_SPEND_CAPS))]
WabaPath = Path(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_-]+$")


def cap_from(body: SpendCapIn | None) -> SpendCap | None:
    """The wire cap as the domain's (None: remove); the amount's ceiling is checked there."""
    if body is None:
        return None
    return make_cap(body.amount, body.categories, body.warn_percent)


def cap_body(cap: SpendCap | None) -> dict[str, object] | None:
    return None if cap is None else cap.as_json()


def waba_cap_body(result: WabaCap) -> dict[str, object]:
    return {"waba_id": result.waba_id, "spend_cap": cap_body(result.spend_cap), "cap_spent": result.cap_spent}


@router.put(
    "/wabas/{waba_id}/spend_cap",
    response_model=WabaCapOut,
    responses=error_responses(400, 401, 403, 404, 422, 503),
)
async def put_spend_cap(
    request: Request,
    principal: CapWriter,
    context: Context,
    body: Annotated[SpendCapIn | None, Body(description="The cap, or null to remove it.")] = None,
    waba_id: str = WabaPath,
) -> dict[str, object]:
    """Set, change (`{amount, categories?, warn_percent?}`) or remove (`null`) the WABA's cap; audited."""
    if body is None and (await request.body()).strip() != b"null":
        # FastAPI reads a JSON null as no body: only a literal null removes a cap, never a missing body.
        raise BillingError(Rejection.INVALID_REQUEST, "the body is the cap, or null to remove it", {"field": "body"})
    changed_by = f"user:{principal.subject or '?'} ({principal.role.value})"
    result = await context.service.set_spend_cap(principal.company_id, waba_id, cap_from(body), changed_by=changed_by)
    return waba_cap_body(result)
