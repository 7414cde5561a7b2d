"""The `waba_save_organization_id` feature flag: where a new WABA of a company goes.

On (the global default, `WABAPOOL_WABA_SAVE_ORGANIZATION_ID`), a new WABA of a
v3 company joins the company's pool; off, it gets a package of its own, as in
v2. A company's override wins over the default. A v2 company's WABAs always
have their own package, whatever the flag says.
"""

from __future__ import annotations

from dataclasses import dataclass

from wabapool.domain.errors import BillingError, Rejection
from wabapool.service.context import ServiceContext
from wabapool.storage import companies as company_store


def joins_pool(billing_version: str, override: bool | None, context: ServiceContext) -> bool:
    """Whether a new WABA of a company with this version and override joins its pool."""
    if billing_version == "v2":
        return False
    return context.waba_save_organization_id if override is None else override


@dataclass(frozen=True, slots=True)
class WabaSaveFlag:
    """The company's `waba_save_organization_id`: its override (None: none), and what new WABAs get."""

    company_id: int
    billing_version: str
    override: bool | None
    effective: bool


async def set_waba_save_flag(context: ServiceContext, company_id: int, value: bool | None) -> WabaSaveFlag:
    """Set (or with None clear) the company's override of the flag; an unknown company is refused, not created."""
    at = context.clock()
    async with context.database.transaction() as connection:
        company = await company_store.get_company(connection, company_id)
        if company is None:
            raise BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
        await company_store.update_company(connection, company_id, waba_save_organization_id=value, updated_at=at)
    return WabaSaveFlag(company_id, company.billing_version, value, joins_pool(company.billing_version, value, context))


async def waba_save_flag(context: ServiceContext, company_id: int) -> WabaSaveFlag:
    """The company's flag as it stands; an unknown company is refused."""
    async with context.database.read() as connection:
        company = await company_store.get_company(connection, company_id)
    if company is None:
        raise BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
    override = company.waba_save_organization_id
    return WabaSaveFlag(
        company_id, company.billing_version, override, joins_pool(company.billing_version, override, context)
    )
