"""`GET /api/core/v1/statements`: one statement per closed billing cycle (owner, admin, supervisor)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from wabapool.api.deps import Context, require
from wabapool.api.errors import error_responses
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.statements import Figures
from wabapool.security import Permission, Principal
from wabapool.service.statements import StatementView

# Every route here takes a bearer token, and every token request passes the rate limits (api/deps.py).
router = APIRouter(tags=["public"], responses=error_responses(429))
# The same readers as the deduction logs (SPEC section 5: owner, admin, supervisor).
StatementReader = Annotated[Principal, Depends(require(Permission.VIEW_DEDUCTION_LOGS))]
STATEMENTS_MAX_PAGE = 120


class FiguresOut(BaseModel):
    initial_remaining: int
    additional_remaining: int
    postpaid_used: int
    total: int


class CycleOut(BaseModel):
    starts_at: datetime
    ends_at: datetime


class WabaSpentOut(BaseModel):
    waba_id: str
    amount: int


class StatementOut(BaseModel):
    # The WABA whose own package the statement is of (v2); null for the company's shared pool.
    waba_id: str | None
    cycle: CycleOut
    currency: str
    allowance: int
    postpaid_limit: int
    opening: FiguresOut
    closing: FiguresOut
    spent: int
    spent_by_waba: list[WabaSpentOut]
    deductions: int


class StatementPageOut(BaseModel):
    data: list[StatementOut]
    next_cursor: str | None


def _figures(figures: Figures) -> dict[str, int]:
    return {
        "initial_remaining": figures.initial_remaining,
        "additional_remaining": figures.additional_remaining,
        "postpaid_used": figures.postpaid_used,
        "total": figures.total,
    }


def _statement(view: StatementView) -> dict[str, object]:
    return {
        "waba_id": view.waba_id,
        "cycle": {"starts_at": view.cycle_start, "ends_at": view.cycle_end},
        "currency": view.currency,
        "allowance": view.allowance_minor,
        "postpaid_limit": view.postpaid_limit_minor,
        "opening": _figures(view.opening),
        "closing": _figures(view.closing),
        "spent": view.spent_minor,
        "spent_by_waba": [{"waba_id": w, "amount": a} for w, a in sorted(view.spent_by_waba.items())],
        "deductions": view.deductions_count,
    }


def _position(cursor: str) -> tuple[datetime, int | None]:
    """Where a page ended: `{cycle start}~{statement id}` (a v2 company has a statement per WABA and cycle);
    a cycle start alone, as earlier cursors were, still pages past that cycle.

    A time whose UTC form leaves the calendar (`0001-01-01T00:00:00+14:00`, `9999-12-31T23:59:59-14:00`)
    is a tampered cursor like any other: 400, never a driver's overflow.
    """
    invalid = BillingError(Rejection.INVALID_REQUEST, "cursor is not valid", {"field": "cursor"})
    start, _, last_id = cursor.partition("~")
    try:
        at = datetime.fromisoformat(start)
        position = int(last_id) if last_id else None
    except ValueError as exc:
        raise invalid from exc
    if at.tzinfo is None or (position is not None and not 0 < position < 2**63):
        raise invalid
    try:
        at = at.astimezone(UTC)
    except OverflowError as exc:
        raise invalid from exc
    return at, position


@router.get("/statements", response_model=StatementPageOut, responses=error_responses(400, 401, 403, 404))
async def statements(
    principal: StatementReader,
    context: Context,
    cursor: Annotated[str | None, Query(max_length=64, description="next_cursor of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=STATEMENTS_MAX_PAGE)] = 12,
) -> dict[str, object]:
    """Closed billing cycles, newest first: opening and closing per bucket, spend per WABA, deductions."""
    before = None if cursor is None else _position(cursor)
    views = await context.service.statements(principal.company_id, limit=limit, before=before)
    last = views[-1] if len(views) == limit else None
    next_cursor = None if last is None else f"{last.cycle_start.isoformat()}~{last.statement_id}"
    return {"data": [_statement(v) for v in views], "next_cursor": next_cursor}
