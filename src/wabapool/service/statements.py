"""Reading cycle statements (they are written by the cycle reset itself, see storage.statements)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.statements import Figures
from wabapool.storage import companies as company_store
from wabapool.storage import statements as statement_store
from wabapool.storage.database import Database
from wabapool.storage.types import Record


@dataclass(frozen=True, slots=True)
class StatementView:
    statement_id: int
    waba_id: str | None  # the WABA whose own package it is (v2); None for the shared pool
    cycle_start: datetime
    cycle_end: datetime
    currency: str
    allowance_minor: int
    postpaid_limit_minor: int
    opening: Figures
    closing: Figures
    spent_minor: int
    spent_by_waba: dict[str, int]
    deductions_count: int


def _view(row: Record) -> StatementView:
    return StatementView(
        statement_id=row.id,
        waba_id=row.waba_id,
        cycle_start=row.cycle_start,
        cycle_end=row.cycle_end,
        currency=row.currency,
        allowance_minor=row.allowance_minor,
        postpaid_limit_minor=row.postpaid_limit_minor,
        opening=Figures(row.opening_initial_minor, row.opening_additional_minor, row.opening_postpaid_used_minor),
        closing=Figures(row.closing_initial_minor, row.closing_additional_minor, row.closing_postpaid_used_minor),
        spent_minor=row.spent_minor,
        spent_by_waba=dict(row.spent_by_waba),
        deductions_count=row.deductions_count,
    )


async def list_statements(
    database: Database, company_id: int, *, limit: int, before: tuple[datetime, int | None] | None = None
) -> list[StatementView]:
    """The company's closed cycles, newest first; `before` pages on (cycle start, statement id).

    An unknown company is `unknown_company` (404), as on every other endpoint, not an empty list.
    """
    async with database.read() as connection:
        rows = await statement_store.list_statements(connection, company_id, limit=limit, before=before)
        if not rows and await company_store.get_company(connection, company_id) is None:
            raise BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
    return [_view(row) for row in rows]
