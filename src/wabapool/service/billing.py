"""The billing use cases. Each public method is one transaction (or one per company)."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain import limits, operations, thresholds
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.pool import Portion, QuotaType
from wabapool.pii import DEVELOPMENT_KEYS, PiiSealer
from wabapool.service import deductions
from wabapool.service.group_commit import GroupCommitter
from wabapool.service.models import (
    Allocation,
    BalanceView,
    BatchItemResult,
    CompanyTerms,
    DeductionRequest,
    DeductionResult,
    FundingResult,
    PackageTerms,
    RefundRequest,
    RefundResult,
    WabaSpend,
    check_amount,
    check_code,
    check_deduction,
)
from wabapool.storage import companies as company_store
from wabapool.storage import ledger as ledger_store
from wabapool.storage import pools as pool_store
from wabapool.storage import requests as request_store
from wabapool.storage import usage as usage_store
from wabapool.storage.database import Database

Clock = Callable[[], datetime]
AfterCommit = Callable[[int], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _allocations(moves: Sequence[Any]) -> tuple[Allocation, ...]:
    return tuple(Allocation.of(Portion(m.quota_type, abs(m.amount_minor))) for m in moves)


def _allocation_json(allocations: Sequence[Allocation]) -> list[dict[str, Any]]:
    return [{"credited_to": a.credited_to, "quota_type": a.quota_type, "amount": a.amount} for a in allocations]


def _check_package(package: PackageTerms) -> BillingError | None:
    for name, value in (("allowance", package.allowance), ("postpaid_limit", package.postpaid_limit)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limits.AMOUNT_MAX_MINOR:
            return BillingError(
                Rejection.INVALID_REQUEST, f"{name} must be a non-negative integer", {"field": f"package.{name}"}
            )
    if not 1 <= package.cycle_anchor_day <= 31:
        return BillingError(
            Rejection.INVALID_REQUEST, "cycle_anchor_day is 1..31", {"field": "package.cycle_anchor_day"}
        )
    return None


class BillingService:
    """The engine's operations, atomic and safe under concurrent callers and processes."""

    def __init__(
        self,
        database: Database,
        *,
        clock: Clock = utc_now,
        sealer: PiiSealer | None = None,
        after_commit: AfterCommit | None = None,
    ) -> None:
        self.database = database
        self.clock = clock
        self.sealer = sealer or PiiSealer(DEVELOPMENT_KEYS)
        self._after_commit = after_commit
        self._group_commit = GroupCommitter(self._apply_group)
        self._memberships = deductions.WabaMembership()

    async def _changed(self, company_id: int) -> None:
        """After commit, before returning: drop the company's cached balance."""
        if self._after_commit is not None:
            await self._after_commit(company_id)

    # -- provisioning -------------------------------------------------------

    async def provision_company(self, company_id: int, terms: CompanyTerms) -> None:
        """Idempotent upsert of a company and, for v3, its pool."""
        if terms.package is not None:
            error = _check_package(terms.package)
            if error is not None:
                raise error
        at = self.clock()
        values = {"billing_version": terms.billing_version, "currency": terms.currency, "timezone": terms.timezone}
        async with self.database.transaction() as connection:
            await company_store.upsert_company(connection, company_id=company_id, values=values, at=at)
            if terms.package is not None:
                await self._provision_pool(connection, company_id, terms, terms.package, at)
            elif terms.billing_version == "v3" and await company_store.package_id_of(connection, company_id) is None:
                # A v3 company always has its pool; without terms it starts empty (no allowance, no credit line).
                await self._provision_pool(connection, company_id, terms, PackageTerms(allowance=0), at)
        await self._changed(company_id)

    async def _provision_pool(
        self,
        connection: AsyncConnection,
        company_id: int,
        terms: CompanyTerms,
        package: PackageTerms,
        at: datetime,
    ) -> None:
        pool = await pool_store.load_pool(connection, company_id, for_update=True)
        if pool is None:
            change = operations.open_pool(
                company_id=company_id,
                allowance_minor=package.allowance,
                postpaid_limit_minor=package.postpaid_limit,
                anchor_day=package.cycle_anchor_day,
                timezone=terms.timezone,
                threshold_percent=package.threshold_percent,
                at=at,
            )
            pool = await pool_store.create_pool(
                connection,
                company_id=company_id,
                state=change.state,
                threshold_percent=package.threshold_percent,
                at=at,
            )
            await self._write_moves(connection, pool, change, reference="provision", at=at)
            return
        change = operations.catch_up(pool.state, at)
        used = change.state.buckets.postpaid_used
        if package.postpaid_limit < used:
            # The pool may never owe more than its credit line (reconcile checks it): settle first.
            raise BillingError(
                Rejection.INVALID_REQUEST,
                "postpaid_limit is under what postpaid has already used",
                {"field": "package.postpaid_limit", "postpaid_used": used},
            )
        adjusted = operations.adjust_allowance(change.state, package.allowance)
        state = replace(
            adjusted.state,
            buckets=adjusted.state.buckets._replace(postpaid_limit=package.postpaid_limit),
            anchor_day=package.cycle_anchor_day,
            threshold_percent=package.threshold_percent,
        )
        await pool_store.set_pool_settings(
            connection, pool, anchor_day=package.cycle_anchor_day, threshold_percent=package.threshold_percent
        )
        await self._write_after_catch_up(
            connection, pool, change, operations.Change(state, adjusted.moves), reference="provision", at=at
        )

    async def _write_moves(
        self,
        connection: AsyncConnection,
        pool: pool_store.LockedPool,
        change: operations.Change,
        *,
        reference: str,
        at: datetime,
        waba_id: str | None = None,
        deduction_request_id: int | None = None,
    ) -> None:
        await self._write_after_catch_up(
            connection,
            pool,
            operations.Change(pool.state),
            change,
            reference=reference,
            at=at,
            waba_id=waba_id,
            deduction_request_id=deduction_request_id,
        )

    async def _write_after_catch_up(
        self,
        connection: AsyncConnection,
        pool: pool_store.LockedPool,
        caught_up: operations.Change,
        change: operations.Change,
        *,
        reference: str,
        at: datetime,
        waba_id: str | None = None,
        deduction_request_id: int | None = None,
    ) -> None:
        """Ledger entries of any due cycle resets, then of the change; the pool saved once, events in order."""
        state = change.state
        cycle = ledger_store.EntryContext(
            reference=f"cycle:{caught_up.state.cycle_label}", cycle_start=caught_up.state.cycle_start
        )
        context = ledger_store.EntryContext(
            reference=reference,
            cycle_start=state.cycle_start,
            waba_id=waba_id,
            deduction_request_id=deduction_request_id,
        )
        company_id, package_id = state.company_id, pool.package_id
        rows = ledger_store.entry_rows(
            company_id=company_id, package_id=package_id, moves=caught_up.moves, context=cycle, at=at
        ) + ledger_store.entry_rows(
            company_id=company_id, package_id=package_id, moves=change.moves, context=context, at=at
        )
        await ledger_store.append_entries(connection, rows)
        await pool_store.save_pool(connection, pool, state, at=at)
        events = caught_up.events + change.events
        await ledger_store.emit_events(connection, company_id=company_id, events=events, at=at)

    async def provision_waba(self, company_id: int, waba_id: str, *, name: str) -> None:
        """Idempotent: the WABA joins the company's pool (if the company has one)."""
        error = check_code("waba_id", waba_id, max_length=32) or check_code(
            "name", name, max_length=limits.NAME_MAX_LENGTH
        )
        if error:
            raise error
        at = self.clock()
        async with self.database.transaction() as connection:
            if await company_store.get_company(connection, company_id) is None:
                raise BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
            package_id = await company_store.package_id_of(connection, company_id)
            await company_store.upsert_waba(
                connection, company_id=company_id, waba_id=waba_id, name=name, package_id=package_id, at=at
            )
        await self._changed(company_id)

    async def set_price(
        self,
        deduction_code: str,
        *,
        unit_price_minor: int,
        company_id: int | None = None,
        market: str | None = None,
        effective_from: datetime | None = None,
    ) -> None:
        """Idempotent upsert of one price-list entry; a new Meta rate is a new row."""
        error = check_code("deduction_code", deduction_code)
        if error:
            raise error
        if (
            isinstance(unit_price_minor, bool)
            or not isinstance(unit_price_minor, int)
            or not (0 <= unit_price_minor <= limits.AMOUNT_MAX_MINOR)
        ):
            raise BillingError(
                Rejection.INVALID_REQUEST, "unit_price must be a non-negative integer", {"field": "unit_price"}
            )
        if market is not None and (not market.isdigit() or not 1 <= len(market) <= 4):
            raise BillingError(Rejection.INVALID_REQUEST, "market is a country calling code", {"field": "market"})
        at = self.clock()
        async with self.database.transaction() as connection:
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

    async def set_webhook(self, company_id: int, *, url: str, secret: str) -> None:
        """Where the company's events go; the signing secret is sealed at rest."""
        sealed = self.sealer.seal(secret)
        if sealed is None:
            raise RuntimeError("sealing a secret returned nothing")
        async with self.database.transaction() as connection:
            if await company_store.get_company(connection, company_id) is None:
                raise BillingError(Rejection.UNKNOWN_COMPANY, "unknown company")
            await company_store.update_company(
                connection, company_id, webhook_url=url, webhook_secret=base64.b64encode(sealed).decode()
            )

    # -- deductions ---------------------------------------------------------

    async def deduct(self, request: DeductionRequest, *, service_name: str | None = None) -> DeductionResult:
        """One deduction; raises the rejection as a BillingError."""
        outcome = await self.deduct_one(request, service_name=service_name)
        return outcome.unwrap()

    async def deduct_one(self, request: DeductionRequest, *, service_name: str | None = None) -> BatchItemResult:
        """One deduction as an outcome; concurrent calls for one pool share a transaction."""
        error = check_deduction(request)
        if error is not None:
            return BatchItemResult(str(request.unique_code), "rejected", error=error)
        return await self._group_commit.submit(deductions.Prepared.of(request, self.sealer), service_name)

    async def deduct_batch(
        self, requests: Sequence[DeductionRequest], *, service_name: str | None = None
    ) -> list[BatchItemResult]:
        """One result per item, in order; items share transactions with whatever else charges their pool."""
        if len(requests) > limits.BATCH_MAX_ITEMS:
            raise BillingError(Rejection.INVALID_REQUEST, f"at most {limits.BATCH_MAX_ITEMS} items per batch")
        results: list[BatchItemResult | None] = [None] * len(requests)
        checked: list[int] = []
        prepared: list[deductions.Prepared] = []
        for index, request in enumerate(requests):
            error = check_deduction(request)
            if error is not None:
                results[index] = BatchItemResult(str(request.unique_code), "rejected", error=error)
            else:
                checked.append(index)
                prepared.append(deductions.Prepared.of(request, self.sealer))
        outcomes = await self._group_commit.submit_many(prepared, service_name)
        for index, outcome in zip(checked, outcomes, strict=True):
            results[index] = outcome
        return [r for r in results if r is not None]

    async def _apply_group(
        self, company_id: int, items: Sequence[deductions.Prepared], service_name: str | None
    ) -> list[BatchItemResult]:
        """One transaction for checked deductions of one company (two if a code turns out to be taken)."""
        try:
            return await self._apply_group_once(company_id, items, service_name, look_up_existing=False)
        except deductions.AlreadyApplied:
            return await self._apply_group_once(company_id, items, service_name, look_up_existing=True)

    async def _apply_group_once(
        self,
        company_id: int,
        items: Sequence[deductions.Prepared],
        service_name: str | None,
        *,
        look_up_existing: bool,
    ) -> list[BatchItemResult]:
        at = self.clock()
        async with self.database.transaction() as connection:
            applied = await deductions.apply_group(
                connection,
                company_id,
                items,
                at=at,
                service_name=service_name,
                memberships=self._memberships,
                look_up_existing=look_up_existing,
            )
        if applied.changed:
            await self._changed(company_id)
        return applied.results()

    # -- refunds and payments -----------------------------------------------

    async def _lock(
        self, connection: AsyncConnection, company_id: int, at: datetime, *, for_update: bool = True
    ) -> tuple[pool_store.LockedPool, operations.Change]:
        """The company's pool (locked unless only read), caught up to the cycle in force at `at`."""
        pool = await pool_store.load_pool(connection, company_id, for_update=for_update)
        if pool is None:
            raise await deductions.missing_pool(connection, company_id)
        return pool, operations.catch_up(pool.state, at)

    async def refund(self, request: RefundRequest, *, service_name: str | None = None) -> RefundResult:
        """Give a deduction back by its unique_code; idempotent on refund_code."""
        error = check_code("unique_code", request.unique_code, max_length=limits.UNIQUE_CODE_MAX_LENGTH) or check_code(
            "refund_code", request.refund_code, max_length=limits.UNIQUE_CODE_MAX_LENGTH
        )
        if error:
            raise error
        at = self.clock()
        async with self.database.transaction() as connection:
            pool, caught_up = await self._lock(connection, request.company_id, at)
            deduction = await request_store.find_deduction_for_refund(
                connection, request.company_id, request.unique_code
            )
            if deduction is None:
                raise BillingError(
                    Rejection.UNKNOWN_DEDUCTION,
                    "no deduction with this unique_code",
                    {"unique_code": request.unique_code},
                )
            earlier = await request_store.find_refund(connection, request.company_id, refund_code=request.refund_code)
            if earlier is not None:
                if earlier.deduction_request_id != deduction.id:
                    raise BillingError(
                        Rejection.IDEMPOTENCY_CONFLICT,
                        "refund_code was already used for another deduction",
                        {"refund_code": request.refund_code},
                    )
                return self._refund_result(earlier, request, replayed=True)
            if (
                await request_store.find_refund(connection, request.company_id, deduction_request_id=deduction.id)
                is not None
            ):
                raise BillingError(
                    Rejection.ALREADY_REFUNDED,
                    "this deduction was already refunded",
                    {"unique_code": request.unique_code},
                )
            taken = [Portion(QuotaType(a["quota_type"]), a["amount"]) for a in deduction.allocations]
            change = operations.refund(caught_up.state, taken, taken_cycle_start=deduction.cycle_start)
            allocations = tuple(Allocation.of(p) for p in change.portions)
            refund_id = await request_store.insert_refund(
                connection,
                {
                    "company_id": request.company_id,
                    "refund_code": request.refund_code,
                    "deduction_request_id": deduction.id,
                    "reason": (request.reason or "")[: limits.NAME_MAX_LENGTH] or None,
                    "amount_minor": deduction.amount_minor,
                    "allocations": _allocation_json(allocations),
                    "value_before_minor": caught_up.state.buckets.total,
                    "value_after_minor": change.state.buckets.total,
                    "service_name": service_name,
                    "created_at": at,
                },
            )
            await self._write_after_catch_up(
                connection,
                pool,
                caught_up,
                change,
                reference=request.refund_code,
                at=at,
                waba_id=deduction.waba_id,
                deduction_request_id=deduction.id,
            )
            if deduction.cycle_start == caught_up.state.cycle_start:
                await ledger_store.add_waba_spend(
                    connection,
                    company_id=request.company_id,
                    cycle_start=deduction.cycle_start,
                    spend_by_waba={deduction.waba_id: -deduction.amount_minor},
                )
            await usage_store.add_daily_usage(
                connection,
                company_id=request.company_id,
                day=usage_store.local_day(at, caught_up.state.timezone),
                rows=[(deduction.waba_id, -deduction.amount_minor, -deduction.quantity)],
            )
        await self._changed(request.company_id)
        return RefundResult(
            refund_id=refund_id,
            unique_code=request.unique_code,
            refund_code=request.refund_code,
            amount=deduction.amount_minor,
            value_before=caught_up.state.buckets.total,
            value_after=change.state.buckets.total,
            allocations=allocations,
        )

    @staticmethod
    def _refund_result(row: Any, request: RefundRequest, *, replayed: bool) -> RefundResult:
        return RefundResult(
            refund_id=row.id,
            unique_code=request.unique_code,
            refund_code=row.refund_code,
            amount=row.amount_minor,
            value_before=row.value_before_minor,
            value_after=row.value_after_minor,
            allocations=tuple(Allocation(**a) for a in row.allocations),
            replayed=replayed,
        )

    async def top_up(
        self, company_id: int, *, amount: int, payment_reference: str, service_name: str | None = None
    ) -> FundingResult:
        """Credit a payment: postpaid use first, the rest to `additional`."""
        return await self._fund(company_id, "top_up", amount, payment_reference, service_name, operations.top_up)

    async def settle_postpaid(
        self, company_id: int, *, amount: int, payment_reference: str, service_name: str | None = None
    ) -> FundingResult:
        """Record a paid postpaid bill."""
        return await self._fund(
            company_id, "settlement", amount, payment_reference, service_name, operations.settle_postpaid
        )

    async def _fund(
        self,
        company_id: int,
        kind: str,
        amount: int,
        payment_reference: str,
        service_name: str | None,
        operation: Callable[..., operations.Change],
    ) -> FundingResult:
        error = check_amount("amount", amount) or check_code(
            "payment_reference", payment_reference, max_length=limits.UNIQUE_CODE_MAX_LENGTH
        )
        if error:
            raise error
        at = self.clock()
        async with self.database.transaction() as connection:
            pool, caught_up = await self._lock(connection, company_id, at)
            earlier = await request_store.find_payment(connection, company_id, kind, payment_reference)
            if earlier is not None:
                if earlier.amount_minor != amount:
                    raise BillingError(
                        Rejection.IDEMPOTENCY_CONFLICT,
                        "payment_reference was already used with a different amount",
                        {"payment_reference": payment_reference},
                    )
                return FundingResult(
                    payment_id=earlier.id,
                    payment_reference=payment_reference,
                    amount=amount,
                    value_before=earlier.value_before_minor,
                    value_after=earlier.value_after_minor,
                    allocations=tuple(Allocation(**a) for a in earlier.allocations),
                    replayed=True,
                )
            change = operation(caught_up.state, amount, payment_reference=payment_reference)
            allocations = _allocations(change.moves)
            payment_id = await request_store.insert_payment(
                connection,
                {
                    "company_id": company_id,
                    "kind": kind,
                    "payment_reference": payment_reference,
                    "amount_minor": amount,
                    "allocations": _allocation_json(allocations),
                    "value_before_minor": caught_up.state.buckets.total,
                    "value_after_minor": change.state.buckets.total,
                    "service_name": service_name,
                    "created_at": at,
                },
            )
            await self._write_after_catch_up(connection, pool, caught_up, change, reference=payment_reference, at=at)
        await self._changed(company_id)
        return FundingResult(
            payment_id=payment_id,
            payment_reference=payment_reference,
            amount=amount,
            value_before=caught_up.state.buckets.total,
            value_after=change.state.buckets.total,
            allocations=allocations,
        )

    # -- cycles and reads ---------------------------------------------------

    async def reset_cycles(self, *, at: datetime | None = None) -> dict[int, int]:
        """Catch every pool up to the cycle in force at `at`; returns cycles reset per company."""
        at = at or self.clock()
        async with self.database.read() as connection:
            company_ids = await pool_store.pool_company_ids(connection)
        reset: dict[int, int] = {}
        for company_id in company_ids:
            async with self.database.transaction() as connection:
                pool, change = await self._lock(connection, company_id, at)
                if change.state.cycle_start != pool.state.cycle_start:
                    await self._write_moves(
                        connection, pool, change, reference=f"cycle:{change.state.cycle_label}", at=at
                    )
                    reset[company_id] = len(change.events)
            if company_id in reset:
                await self._changed(company_id)
        return reset

    async def balance(self, company_id: int) -> BalanceView:
        """The aggregated pool as of now (a due reset is shown as if it had run)."""
        at = self.clock()
        async with self.database.read() as connection:
            pool, caught_up = await self._lock(connection, company_id, at, for_update=False)
            state = caught_up.state
            wabas = await company_store.list_wabas(connection, company_id)
            spend = await ledger_store.waba_spend(connection, company_id=company_id, cycle_start=state.cycle_start)
        buckets = state.buckets
        return BalanceView(
            company_id=company_id,
            billing_version=pool.billing_version,
            currency=pool.currency,
            total=buckets.total,
            available=buckets.available,
            allowance=buckets.initial_allowance,
            initial_remaining=buckets.initial_remaining,
            additional_remaining=buckets.additional_remaining,
            postpaid_limit=buckets.postpaid_limit,
            postpaid_used=buckets.postpaid_used,
            threshold_percent=thresholds.effective_threshold(state.threshold_percent),
            low_balance=state.is_low,
            below_zero=state.is_below_zero,
            cycle_starts_at=state.cycle_start,
            cycle_ends_at=state.cycle_end,
            wabas=tuple(WabaSpend(w.waba_id, w.name, spend.get(w.waba_id, 0)) for w in wabas),
            as_of=at,
            timezone=state.timezone,
            funded_this_cycle=state.funded_base_minor,
        )
