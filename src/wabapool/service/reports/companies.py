"""The checks every report starts with: the company exists, and a WABA filter names one of its own."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain.errors import BillingError, Rejection
from wabapool.storage import companies as company_store
from wabapool.storage.types import Record


async def company_of(connection: AsyncConnection, company_id: int) -> Record:
    """The company's row, or `unknown_company`."""
    company: Record | None = await company_store.get_company(connection, company_id)
    if company is None:
        raise BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
    return company


async def check_waba(connection: AsyncConnection, company_id: int, waba_id: str | None) -> None:
    """Another company's WABA answers exactly like one that does not exist."""
    if waba_id is not None and not await company_store.waba_exists(connection, company_id, waba_id):
        raise BillingError(Rejection.UNKNOWN_WABA, "no such WABA in this company", {"waba_id": waba_id})
