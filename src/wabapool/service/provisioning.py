"""Provisioning: companies and their pool's terms, WABAs and their packages, the price list (webhooks elsewhere).

Upserts that keep what they are not told: a term left out keeps its current
value, and the defaults apply only when a company is created. The terms money
depends on are fixed: the billing version changes only through the migration,
the currency not once the company has ledger entries, and a new timezone or
anchor day takes effect at the current cycle's end (`domain.cycle`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain import limits, operations
from wabapool.domain.caps import SpendCap
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.events import DomainEvent
from wabapool.domain.money import is_money_code
from wabapool.domain.pool import Move
from wabapool.domain.zones import UnknownZone, canonical_zone
from wabapool.service import alert_settings, caps
from wabapool.service.context import ServiceContext
from wabapool.service.flags import joins_pool
from wabapool.service.models import (
    DEFAULT_BILLING_VERSION,
    DEFAULT_CURRENCY,
    DEFAULT_TIMEZONE,
    KEEP,
    CompanyTerms,
    Keep,
    PackageTerms,
    ProvisionedCompany,
    ProvisionedWaba,
    check_amount,
    check_code,
)
from wabapool.service.pool_changes import check_company_sum, pool_changes, write
from wabapool.service.reports.companies import company_of
from wabapool.storage import companies as company_store
from wabapool.storage import ledger as ledger_store
from wabapool.storage import pools as pool_store
from wabapool.storage.database import Database
from wabapool.storage.types import Record


def _check_package(package: PackageTerms) -> BillingError | None:
    for name, value in (("allowance", package.allowance), ("postpaid_limit", package.postpaid_limit)):
        if value is not None:
            error = check_amount(f"package.{name}", value, minimum=0)
            if error is not None:
                return error
    anchor_day = package.cycle_anchor_day
    if anchor_day is not None and (isinstance(anchor_day, bool) or not 1 <= anchor_day <= 31):
        return BillingError(
            Rejection.INVALID_REQUEST, "cycle_anchor_day is 1..31", {"field": "package.cycle_anchor_day"}
        )
    return None


def _check_place(terms: CompanyTerms) -> BillingError | None:
    """The currency an active ISO 4217 money code, the timezone a canonical IANA name (`domain.zones`)."""
    if terms.currency is not None and not is_money_code(terms.currency):
        return BillingError(
            Rejection.INVALID_REQUEST, "currency is not an active ISO 4217 money code", {"field": "currency"}
        )
    if terms.timezone is not None:
        try:
            canonical_zone(terms.timezone)
        except UnknownZone as exc:
            return BillingError(Rejection.INVALID_REQUEST, f"timezone: {exc}", {"field": "timezone"})
    return None


async def _locked_terms(connection: AsyncConnection, existing: Record, terms: CompanyTerms) -> BillingError | None:
    """What an update of an existing company may not change: its billing version, and its currency once used."""
    if terms.billing_version is not None and terms.billing_version != existing.billing_version:
        return BillingError(
            Rejection.BILLING_VERSION_LOCKED,
            "billing_version changes only through the migration (wabapool backfill)",
            {"billing_version": existing.billing_version},
        )
    changes_currency = terms.currency is not None and terms.currency != existing.currency
    # The ledger is asked only when the currency would change: most updates leave it alone.
    if changes_currency and await ledger_store.has_entries(connection, existing.company_id):
        return BillingError(
            Rejection.CURRENCY_LOCKED,
            "the currency of a company with ledger entries cannot change",
            {"currency": existing.currency},
        )
    return None


async def provision_company(context: ServiceContext, company_id: int, terms: CompanyTerms) -> ProvisionedCompany:
    """Idempotent upsert of a company and, for v3, its pool; a term not given keeps its value."""
    error = _check_place(terms) or (None if terms.package is None else _check_package(terms.package))
    if error is not None:
        raise error
    alerting = alert_settings.settings_values(
        balance_alerts=terms.balance_alerts,
        auto_recharge=terms.auto_recharge,
        forecast_warning_days=terms.forecast_warning_days,
    )
    at = context.clock()
    async with context.database.transaction() as connection:
        existing = await company_store.get_company(connection, company_id)
        if existing is not None:
            error = await _locked_terms(connection, existing, terms)
            if error is not None:
                raise error
        billing_version = terms.billing_version or (existing.billing_version if existing else DEFAULT_BILLING_VERSION)
        currency = terms.currency or (existing.currency if existing else DEFAULT_CURRENCY)
        timezone = terms.timezone or (existing.timezone if existing else DEFAULT_TIMEZONE)
        package = terms.package
        values: dict[str, object] = {"billing_version": billing_version, "currency": currency, "timezone": timezone}
        template = None
        if billing_version == "v2":
            # No pool: the terms are what each new WABA's own package starts with (kept where not given).
            template = _merged(_template_of(existing), package or PackageTerms())
            values["waba_package_terms"] = _template_json(template)
            package = None
        if package is None and billing_version == "v3":
            # A v3 company always has its pool; without terms it starts empty (no allowance, no credit line).
            package = PackageTerms()
        state = None
        if existing is not None and package is not None:
            # Under the terms in force until now: a cycle that ended is closed by the old timezone first.
            pool = await pool_store.load_pool(connection, company_id, for_update=True)
            _, state = await _provision_package(connection, pool, company_id, None, timezone, package, at)
        given_flag = terms.waba_save_organization_id
        if not isinstance(given_flag, Keep):
            values["waba_save_organization_id"] = given_flag
        values.update(alerting)
        await company_store.upsert_company(connection, company_id=company_id, values=values, at=at)
        if existing is None and package is not None:
            _, state = await _provision_package(connection, None, company_id, None, timezone, package, at)
        stored_flag = existing.waba_save_organization_id if existing else None
        flag = stored_flag if isinstance(given_flag, Keep) else given_flag
        settings = alert_settings.settings_of(await company_of(connection, company_id))
    await context.changed(company_id)
    return ProvisionedCompany(
        company_id=company_id,
        billing_version=billing_version,
        currency=currency,
        timezone=timezone,
        package=template if state is None else _terms_of(state),
        waba_save_organization_id=flag,
        settings=settings,
    )


def _template_of(company: Record | None) -> PackageTerms:
    """A v2 company's terms for its WABAs' new packages (every term given: stored whole)."""
    stored = None if company is None else company.waba_package_terms
    if not stored:
        return PackageTerms(allowance=0, postpaid_limit=0, cycle_anchor_day=1, threshold_percent=None)
    threshold = stored.get("threshold_percent")
    return PackageTerms(
        allowance=int(stored["allowance"]),
        postpaid_limit=int(stored["postpaid_limit"]),
        cycle_anchor_day=int(stored["cycle_anchor_day"]),
        threshold_percent=None if threshold is None else Decimal(threshold),
    )


def _template_json(terms: PackageTerms) -> dict[str, object]:
    # Money as integers, the threshold as a decimal string: JSON keeps both exact.
    threshold = terms.threshold_percent
    return {
        "allowance": terms.allowance,
        "postpaid_limit": terms.postpaid_limit,
        "cycle_anchor_day": terms.cycle_anchor_day,
        "threshold_percent": None if threshold is None or threshold is KEEP else str(threshold),
    }


def _merged(base: PackageTerms, given: PackageTerms) -> PackageTerms:
    """`given`'s terms, `base`'s where one was left out."""
    return PackageTerms(
        allowance=base.allowance if given.allowance is None else given.allowance,
        postpaid_limit=base.postpaid_limit if given.postpaid_limit is None else given.postpaid_limit,
        cycle_anchor_day=base.cycle_anchor_day if given.cycle_anchor_day is None else given.cycle_anchor_day,
        threshold_percent=base.threshold_percent if given.threshold_percent is KEEP else given.threshold_percent,
    )


def _terms_of(state: operations.PoolState) -> PackageTerms:
    return PackageTerms(
        allowance=state.buckets.initial_allowance,
        postpaid_limit=state.buckets.postpaid_limit,
        cycle_anchor_day=state.anchor_day,
        threshold_percent=state.threshold_percent,
    )


async def _provision_package(
    connection: AsyncConnection,
    pool: pool_store.LockedPool | None,
    company_id: int,
    waba_id: str | None,
    timezone: str,
    package: PackageTerms,
    at: datetime,
) -> tuple[int, operations.PoolState]:
    """Open a package (the pool, or `waba_id`'s own), or change its terms (a term not given is kept).

    `pool` is the package as locked, None to open one; returns its id and new state.
    """
    if pool is None:
        threshold = None if package.threshold_percent is KEEP else package.threshold_percent
        opened = operations.open_pool(
            company_id=company_id,
            allowance_minor=package.allowance or 0,
            postpaid_limit_minor=package.postpaid_limit or 0,
            anchor_day=package.cycle_anchor_day or 1,
            timezone=timezone,
            threshold_percent=threshold,
            at=at,
            waba_id=waba_id,
        )
        await check_company_sum(connection, company_id, None, opened.state)
        pool = await pool_store.create_pool(
            connection, company_id=company_id, state=opened.state, threshold_percent=threshold, at=at
        )
        changes = pool_changes(pool, operations.Change(pool.state), opened, reference="provision", at=at)
        await write(connection, [changes], at=at)
        return pool.package_id, opened.state
    caught_up = operations.catch_up(pool.state, at)
    state = caught_up.state
    moves: list[Move] = []
    events: list[DomainEvent] = []
    if package.postpaid_limit is not None:
        state = operations.set_postpaid_limit(state, package.postpaid_limit).state
    if package.threshold_percent is not KEEP:
        state = replace(state, threshold_percent=package.threshold_percent)
    if package.allowance is not None:
        adjusted = operations.adjust_allowance(state, package.allowance)
        state, moves, events = adjusted.state, adjusted.moves, adjusted.events
    if package.cycle_anchor_day is not None:
        state = replace(state, anchor_day=package.cycle_anchor_day)
    await check_company_sum(connection, company_id, pool.package_id, state)
    changes = pool_changes(pool, caught_up, operations.Change(state, moves, events), reference="provision", at=at)
    await write(connection, [changes], at=at)
    return pool.package_id, state


async def provision_waba(
    context: ServiceContext,
    company_id: int,
    waba_id: str,
    *,
    name: str,
    package: PackageTerms | None = None,
    spend_cap: SpendCap | None | Keep = KEEP,
    changed_by: str = "service:provisioning",
) -> ProvisionedWaba:
    """Idempotent upsert of a WABA; one company owns a WABA id.

    A new WABA joins the company's pool (v3, `waba_save_organization_id` on)
    or gets its own package with `package`'s terms (v2, or the flag off). An
    existing WABA keeps where it spends: the flag shapes only new ones, and
    `package` then changes its own package's terms.
    """
    error = check_code("waba_id", waba_id, max_length=32) or check_code("name", name, max_length=limits.NAME_MAX_LENGTH)
    if error is None and package is not None:
        error = _check_package(package)
    if error:
        raise error
    at = context.clock()
    async with context.database.transaction() as connection:
        company = await company_store.get_company(connection, company_id)
        if company is None:
            raise BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
        owner, claimed_now = await company_store.claim_waba(connection, company_id, waba_id, at=at)
        if owner != company_id:
            # Meta's WABA id is global: say it is taken, not by whom.
            raise BillingError(
                Rejection.WABA_OWNED_ELSEWHERE, "this WABA belongs to another company", {"waba_id": waba_id}
            )
        package_id = None if claimed_now else await company_store.waba_package_id(connection, company_id, waba_id)
        current = None
        if package_id is not None:
            current = (await pool_store.load_packages(connection, company_id, [package_id], for_update=True)).get(
                package_id
            )
        state = None
        in_pool = (
            current.waba_id is None
            if current is not None
            else joins_pool(company.billing_version, company.waba_save_organization_id, context)
        )
        if in_pool:
            if package is not None:
                raise BillingError(
                    Rejection.INVALID_REQUEST,
                    "this WABA spends from the company's shared pool: its terms are the company's package",
                    {"field": "package"},
                )
            if current is None:
                pool = await pool_store.load_pool(connection, company_id, for_update=False)
                package_id = None if pool is None else pool.package_id
        elif current is None:
            # A new package of its own: the terms given, the company's WABA terms (v2) where one is left out.
            package_terms = _merged(_template_of(company), package or PackageTerms())
            package_id, state = await _provision_package(
                connection, None, company_id, waba_id, company.timezone, package_terms, at
            )
        else:
            state = current.state
            if package is not None:
                _, state = await _provision_package(
                    connection, current, company_id, waba_id, company.timezone, package, at
                )
        await company_store.upsert_waba(
            connection, company_id=company_id, waba_id=waba_id, name=name, package_id=package_id, at=at
        )
        if isinstance(spend_cap, Keep):
            cap = await caps.current_cap(connection, company_id, waba_id)
        else:
            cap = (
                await caps.apply_spend_cap(connection, company_id, waba_id, spend_cap, changed_by=changed_by, at=at)
            ).spend_cap
    await context.changed(company_id)
    return ProvisionedWaba(company_id, waba_id, name, None if state is None else _terms_of(state), cap)


async def set_price(
    context: ServiceContext,
    deduction_code: str,
    *,
    unit_price_minor: int,
    company_id: int | None = None,
    market: str | None = None,
    effective_from: datetime | None = None,
) -> None:
    """Idempotent upsert of one price-list entry; a new Meta rate is a new row."""
    error = check_code("deduction_code", deduction_code) or check_amount("unit_price", unit_price_minor, minimum=0)
    if error:
        raise error
    if market is not None and (not market.isdigit() or not 1 <= len(market) <= 4):
        raise BillingError(Rejection.INVALID_REQUEST, "market is a country calling code", {"field": "market"})
    at = context.clock()
    async with context.database.transaction() as connection:
        if company_id is not None and await company_store.get_company(connection, company_id) is None:
            raise BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
        await company_store.upsert_price(
            connection,
            deduction_code=deduction_code,
            unit_price_minor=unit_price_minor,
            company_id=company_id,
            market=market,
            effective_from=effective_from or at,
            at=at,
        )


async def company_timezone(database: Database, company_id: int) -> str | None:
    """The company's timezone, or None for an unknown company (the CLI shows dates in it)."""
    async with database.read() as connection:
        company = await company_store.get_company(connection, company_id)
    return None if company is None else str(company.timezone)
