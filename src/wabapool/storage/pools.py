"""Packages (the company's shared pool, or one WABA's own package): locked, loaded into a PoolState, written back.

A v3 company spends from its shared pool; a v2 company has one package per
WABA (and so does a v3 WABA added with `waba_save_organization_id` off). Every
package has the same rows: the package, its `wa_balance` component, three
buckets. A closed package (moved into the pool by the backfill) is kept for
the record and never charged.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.selectable import Select

from wabapool.domain import alerts
from wabapool.domain.json_types import JSONValue
from wabapool.domain.operations import PoolState
from wabapool.domain.pool import COMPONENT_CODE, Buckets, QuotaType
from wabapool.storage import pg
from wabapool.storage.tables import billing_components, companies, organization_packages, quota_buckets
from wabapool.storage.types import ColumnValues


@dataclass(frozen=True, slots=True)
class LockedPool:
    """A pool as read under its row lock, with the ids needed to write it back."""

    package_id: int
    component_id: int
    billing_version: str
    currency: str
    state: PoolState
    closed: bool = False
    # The version the package was read at (storage.versions): what a balance built from this read is ordered by.
    version: int = 0
    # A WABA charging it has (or had) a spending cap: the group reads caps (migration 0011).
    spend_caps: bool = False

    @property
    def waba_id(self) -> str | None:
        """The WABA whose own package this is; None for the shared pool."""
        return self.state.waba_id


POOL_COLUMNS = (
    organization_packages.c.id,
    organization_packages.c.company_id,
    organization_packages.c.cycle_anchor_day,
    organization_packages.c.cycle_start,
    organization_packages.c.cycle_end,
    organization_packages.c.funded_base_minor,
    organization_packages.c.low_balance_armed,
    organization_packages.c.below_zero_cycle_start,
    organization_packages.c.waba_id,
    organization_packages.c.closed_at,
    organization_packages.c.version,
    organization_packages.c.alerts_fired,
    organization_packages.c.top_up_reference,
    organization_packages.c.top_up_amount_minor,
    organization_packages.c.top_up_requested_at,
    organization_packages.c.top_ups_requested,
    billing_components.c.id.label("component_id"),
    billing_components.c.threshold_running_out,
    organization_packages.c.spend_caps,
    companies.c.timezone,
    companies.c.currency,
    companies.c.billing_version,
    companies.c.balance_alerts,
    companies.c.auto_recharge,
    quota_buckets.c.quota_type,
    quota_buckets.c.balance_minor,
    quota_buckets.c.limit_minor,
    quota_buckets.c.used_minor,
)


PACKAGE_ROWS = (
    organization_packages.join(companies, companies.c.company_id == organization_packages.c.company_id)
    .join(
        billing_components,
        (billing_components.c.company_id == organization_packages.c.company_id)
        & (billing_components.c.organization_package_id == organization_packages.c.id)
        & (billing_components.c.component_code == COMPONENT_CODE),
    )
    .join(
        quota_buckets,
        (quota_buckets.c.company_id == billing_components.c.company_id)
        & (quota_buckets.c.billing_component_id == billing_components.c.id),
    )
)
LOCKED_TABLES = [organization_packages, billing_components, quota_buckets]


def _pool_query(company_id: BindParameter[int] | int) -> Select[tuple[object, ...]]:
    return (
        select(*POOL_COLUMNS)
        .select_from(PACKAGE_ROWS)
        .where(
            (organization_packages.c.company_id == company_id)
            & organization_packages.c.waba_id.is_(None)
            & organization_packages.c.closed_at.is_(None)
        )
    )


def packages_query(where: ColumnElement[bool]) -> Select[tuple[object, ...]]:
    # Ordered by company, then package id: every transaction that locks several packages (of one company or,
    # in a group commit, of many) takes them in the same order, so two of them never deadlock.
    return (
        select(*POOL_COLUMNS)
        .select_from(PACKAGE_ROWS)
        .where(where)
        .order_by(organization_packages.c.company_id, organization_packages.c.id)
    )


_LOCK_POOL_PG = pg.compile_statement(_pool_query(bindparam("company_id")).with_for_update(of=LOCKED_TABLES))
_LOCK_PACKAGES_PG = pg.compile_statement(
    packages_query(
        (organization_packages.c.company_id == any_(bindparam("company_ids", type_=ARRAY(BigInteger))))
        & (organization_packages.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
    ).with_for_update(of=LOCKED_TABLES)
)


async def load_pool(connection: AsyncConnection, company_id: int, *, for_update: bool) -> LockedPool | None:
    """The company's open shared pool; with `for_update` its rows stay locked until commit.

    One statement locks and reads: every table whose rows can change under us is
    in `FOR UPDATE OF`, so after waiting for the lock PostgreSQL re-reads all of
    them (a table left out of the list would come back from the stale snapshot).
    """
    rows: Sequence[ColumnValues]
    if for_update and pg.is_postgresql(connection):
        rows = await pg.fetch(connection, _LOCK_POOL_PG, company_id=company_id)
    else:
        rows = (await connection.execute(_pool_query(company_id))).mappings().all()
    packages = packages_of(rows)
    return packages[0] if packages else None


async def load_packages(
    connection: AsyncConnection, company_ids: int | Collection[int], package_ids: Collection[int], *, for_update: bool
) -> dict[int, LockedPool]:
    """These packages of these companies by id, open or closed (the caller checks); locked in (company, id)
    order with `for_update`. A package of another company is not found. Several companies: a group commit
    across companies (the router test allows that sender by name)."""
    if not package_ids:
        return {}
    companies = sorted({company_ids} if isinstance(company_ids, int) else set(company_ids))
    rows: Sequence[ColumnValues]
    if for_update and pg.is_postgresql(connection):
        rows = await pg.fetch(connection, _LOCK_PACKAGES_PG, company_ids=companies, ids=sorted(package_ids))
    else:
        query = packages_query(
            organization_packages.c.company_id.in_(companies) & organization_packages.c.id.in_(sorted(package_ids))
        )
        if for_update:
            query = query.with_for_update(of=LOCKED_TABLES)
        rows = (await connection.execute(query)).mappings().all()
    return {package.package_id: package for package in packages_of(rows)}


async def company_packages(connection: AsyncConnection, company_id: int, *, for_update: bool) -> list[LockedPool]:
    """Every open package of the company (its pool first, then the WABAs' own in id order)."""
    query = packages_query(
        (organization_packages.c.company_id == company_id) & organization_packages.c.closed_at.is_(None)
    )
    if for_update:
        query = query.with_for_update(of=LOCKED_TABLES)
    packages = packages_of((await connection.execute(query)).mappings().all())
    return sorted(packages, key=lambda package: (package.waba_id is not None, package.package_id))


def packages_of(rows: Sequence[ColumnValues]) -> list[LockedPool]:
    """Rows of one or more packages (three buckets each, grouped by package) as LockedPools."""
    by_package: dict[int, list[ColumnValues]] = {}
    for row in rows:
        by_package.setdefault(row["id"], []).append(row)
    return [_package(package_rows) for package_rows in by_package.values()]


def _package(rows: Sequence[ColumnValues]) -> LockedPool:
    by_type = {row["quota_type"]: row for row in rows}
    first = rows[0]
    buckets = Buckets(
        initial_allowance=by_type[QuotaType.INITIAL]["limit_minor"],
        initial_remaining=by_type[QuotaType.INITIAL]["balance_minor"],
        additional_remaining=by_type[QuotaType.ADDITIONAL]["balance_minor"],
        postpaid_limit=by_type[QuotaType.POSTPAID]["limit_minor"],
        postpaid_used=by_type[QuotaType.POSTPAID]["balance_minor"],
        initial_used=by_type[QuotaType.INITIAL]["used_minor"],
    )
    state = PoolState(
        company_id=first["company_id"],
        buckets=buckets,
        cycle_start=first["cycle_start"],
        cycle_end=first["cycle_end"],
        anchor_day=first["cycle_anchor_day"],
        timezone=first["timezone"],
        funded_base_minor=first["funded_base_minor"],
        low_balance_armed=first["low_balance_armed"],
        below_zero_cycle_start=first["below_zero_cycle_start"],
        threshold_percent=first["threshold_running_out"],
        waba_id=first["waba_id"],
        alerting=alerting_of(first["balance_alerts"], first["auto_recharge"], first["currency"]),
        alerts_fired=frozenset(_json(first["alerts_fired"]) or ()),
        top_up_request=_request_of(first),
        top_ups_requested=first["top_ups_requested"],
    )
    return LockedPool(
        first["id"],
        first["component_id"],
        first["billing_version"],
        first["currency"],
        state,
        closed=first["closed_at"] is not None,
        version=first["version"],
        spend_caps=first["spend_caps"],
    )


# Settings are stored as the domain checked them; parsed once per distinct stored value, not per deduction.
_ALERTING_MEMO_MAX = 4_096
_alerting_memo: dict[tuple[str, str, str], alerts.Alerting] = {}


def alerting_of(balance_alerts: JSONValue, auto_recharge: JSONValue, currency: str) -> alerts.Alerting:
    """The company's stored alerts and auto-recharge as the domain's `Alerting`."""
    if not balance_alerts and auto_recharge is None:
        return alerts.Alerting(currency=currency)
    key = (repr(balance_alerts), repr(auto_recharge), currency)
    found = _alerting_memo.get(key)
    if found is None:
        found = alerts.Alerting(
            alerts.parse_alerts(_json(balance_alerts) or []), alerts.parse_auto_recharge(_json(auto_recharge)), currency
        )
        if len(_alerting_memo) >= _ALERTING_MEMO_MAX:
            _alerting_memo.clear()
        _alerting_memo[key] = found
    return found


def _json(value: JSONValue) -> JSONValue:
    """A json column's value: the driver's raw fetch hands it over as text, SQLAlchemy decoded."""
    return json.loads(value) if isinstance(value, str) else value


def _request_of(row: ColumnValues) -> alerts.TopUpRequest | None:
    if row["top_up_reference"] is None:
        return None
    return alerts.TopUpRequest(row["top_up_reference"], row["top_up_amount_minor"], row["top_up_requested_at"])


def _bucket_values(buckets: Buckets) -> dict[QuotaType, tuple[int, int, int]]:
    """Each bucket row's (balance_minor, limit_minor, used_minor)."""
    return {
        QuotaType.INITIAL: (buckets.initial_remaining, buckets.initial_allowance, buckets.initial_used),
        QuotaType.ADDITIONAL: (buckets.additional_remaining, 0, 0),
        QuotaType.POSTPAID: (buckets.postpaid_used, buckets.postpaid_limit, 0),
    }


SET_BUCKET = (
    update(quota_buckets)
    .where(
        (quota_buckets.c.company_id == bindparam("bucket_company_id"))
        & (quota_buckets.c.billing_component_id == bindparam("component_id"))
        & (quota_buckets.c.quota_type == bindparam("bucket"))
    )
    .values(balance_minor=bindparam("balance"), limit_minor=bindparam("limit"), used_minor=bindparam("used"))
)


def bucket_changes(before: Buckets, after: Buckets) -> list[tuple[str, int, int, int]]:
    """(quota type, stored value, limit, used) of every bucket that changed."""
    old = _bucket_values(before)
    return [(quota_type, *values) for quota_type, values in _bucket_values(after).items() if old[quota_type] != values]


def row_state_moved(before: PoolState, after: PoolState) -> bool:
    """Whether the package row's state columns (`package_state_values`) changed."""
    return _row_state(before) != _row_state(after)


def _row_state(state: PoolState) -> tuple[object, ...]:
    """What of a pool's state the package row holds (its buckets are rows of their own)."""
    return (
        state.cycle_start,
        state.cycle_end,
        state.anchor_day,
        state.funded_base_minor,
        state.low_balance_armed,
        state.below_zero_cycle_start,
        state.alerts_fired,
        state.top_up_request,
        state.top_ups_requested,
    )


def package_state_values(state: PoolState) -> dict[str, object]:
    """The package row's state columns as `state` has them (its buckets and threshold are rows of their own)."""
    request = state.top_up_request
    return {
        "cycle_start": state.cycle_start,
        "cycle_end": state.cycle_end,
        "cycle_anchor_day": state.anchor_day,
        "funded_base_minor": state.funded_base_minor,
        "low_balance_armed": state.low_balance_armed,
        "below_zero_cycle_start": state.below_zero_cycle_start,
        "alerts_fired": sorted(state.alerts_fired) or None,
        "top_up_reference": None if request is None else request.payment_reference,
        "top_up_amount_minor": None if request is None else request.amount_minor,
        "top_up_requested_at": None if request is None else request.requested_at,
        "top_ups_requested": state.top_ups_requested,
    }


async def save_pool_state(
    connection: AsyncConnection, pool: LockedPool, after: PoolState, *, at: datetime, row_state: bool = True
) -> None:
    """The package row's cycle and warning state (unless `row_state` is false: the caller's version bump writes
    it, `versions._moved_state`) and the component's threshold, where they changed.

    The buckets are written apart, by `changes.write_changes`.
    """
    before = pool.state
    if row_state and row_state_moved(before, after):
        await connection.execute(
            update(organization_packages)
            .where(
                (organization_packages.c.company_id == before.company_id)
                & (organization_packages.c.id == pool.package_id)
            )
            .values(**package_state_values(after), updated_at=at)
        )
    if before.threshold_percent != after.threshold_percent:
        await connection.execute(
            update(billing_components)
            .where(
                (billing_components.c.company_id == before.company_id) & (billing_components.c.id == pool.component_id)
            )
            .values(threshold_running_out=after.threshold_percent)
        )


async def create_pool(
    connection: AsyncConnection, *, company_id: int, state: PoolState, threshold_percent: object, at: datetime
) -> LockedPool:
    """Insert a new package (the pool, or a WABA's own: `state.waba_id`) with its component and three buckets."""
    package_id = (
        await connection.execute(
            organization_packages.insert()
            .values(
                company_id=company_id,
                waba_id=state.waba_id,
                cycle_anchor_day=state.anchor_day,
                cycle_start=state.cycle_start,
                cycle_end=state.cycle_end,
                funded_base_minor=state.funded_base_minor,
                low_balance_armed=state.low_balance_armed,
                below_zero_cycle_start=state.below_zero_cycle_start,
                created_at=at,
                updated_at=at,
            )
            .returning(organization_packages.c.id)
        )
    ).scalar_one()
    component_id = (
        await connection.execute(
            billing_components.insert()
            .values(
                company_id=company_id,
                organization_package_id=package_id,
                component_code=COMPONENT_CODE,
                threshold_running_out=threshold_percent,
            )
            .returning(billing_components.c.id)
        )
    ).scalar_one()
    await connection.execute(
        quota_buckets.insert(),
        [
            {
                "company_id": company_id,
                "billing_component_id": component_id,
                "quota_type": qt.value,
                "balance_minor": balance,
                "limit_minor": limit,
                "used_minor": used,
            }
            for qt, (balance, limit, used) in _bucket_values(state.buckets).items()
        ],
    )
    return LockedPool(package_id, component_id, "v3", "", state)
