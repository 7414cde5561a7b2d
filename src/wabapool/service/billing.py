"""`BillingService`: the engine's use cases behind one facade, each in a module of its own.

provisioning (companies, pool terms, WABAs, prices, webhooks), deductions
(group commit), refunds, payments, cycles and the balance. Each call is one
transaction (the cycle reset one per company).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from wabapool.domain import limits
from wabapool.domain.caps import SpendCap
from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.forecast import SpendBasis
from wabapool.pii import PiiSealer
from wabapool.service import (
    alert_settings,
    caps,
    cycles,
    deduction_rows,
    deductions,
    flags,
    forecasts,
    payments,
    provisioning,
    recharge,
    refunds,
    webhooks,
)
from wabapool.service.context import AfterCommit, Clock, ServiceContext, WriteThrough, utc_now
from wabapool.service.errors import translates_storage_errors
from wabapool.service.group_commit import GroupCommitter
from wabapool.service.models import (
    KEEP,
    AlertSettings,
    BalanceView,
    BatchItemResult,
    CompanyTerms,
    DeductionRequest,
    DeductionResult,
    FundingResult,
    Keep,
    PackageTerms,
    ProvisionedCompany,
    ProvisionedWaba,
    RefundRequest,
    RefundResult,
    WabaCap,
    check_deduction,
)
from wabapool.service.statements import StatementView, list_statements
from wabapool.storage.database import Database


@translates_storage_errors
class BillingService:
    """The engine's operations, atomic and safe under concurrent callers and processes."""

    def __init__(
        self,
        database: Database,
        *,
        sealer: PiiSealer,
        clock: Clock = utc_now,
        after_commit: AfterCommit | None = None,
        write_through: WriteThrough | None = None,
        max_queued_per_pool: int = limits.MAX_QUEUED_DEDUCTIONS_PER_POOL,
        waba_save_organization_id: bool = True,
    ) -> None:
        """Built by `wabapool.bootstrap` only; no default sealer (the development key is the --demo wiring's).

        `after_commit` drops a company's cached balance; `write_through`, when given, is handed the new one.
        """
        self.context = ServiceContext(
            database,
            clock,
            sealer,
            after_commit,
            write_through,
            waba_save_organization_id,
        )
        # The deduction path: the queue groups concurrent deductions, each group is applied in one unit of work.
        self._group_commit = GroupCommitter(
            deductions.DeductionGroups(self.context).apply, max_queued=max_queued_per_pool
        )
        self._spend_bases = forecasts.SpendBases(self.context)

    @property
    def database(self) -> Database:
        return self.context.database

    @property
    def clock(self) -> Clock:
        return self.context.clock

    @property
    def sealer(self) -> PiiSealer:
        return self.context.sealer

    # -- provisioning -------------------------------------------------------

    async def provision_company(self, company_id: int, terms: CompanyTerms) -> ProvisionedCompany:
        """Idempotent upsert of a company and, for v3, its pool; a term not given keeps its value."""
        return await provisioning.provision_company(self.context, company_id, terms)

    async def provision_waba(
        self,
        company_id: int,
        waba_id: str,
        *,
        name: str,
        package: PackageTerms | None = None,
        spend_cap: SpendCap | None | Keep = KEEP,
        changed_by: str = "service:provisioning",
    ) -> ProvisionedWaba:
        """Idempotent: the WABA joins the company's pool, or has its own package (v2, or the flag off)."""
        return await provisioning.provision_waba(
            self.context, company_id, waba_id, name=name, package=package, spend_cap=spend_cap, changed_by=changed_by
        )

    async def set_spend_cap(self, company_id: int, waba_id: str, cap: SpendCap | None, *, changed_by: str) -> WabaCap:
        """Set or remove (None) a WABA's spending cap; audited as `changed_by`."""
        return await caps.set_spend_cap(self.context, company_id, waba_id, cap, changed_by=changed_by)

    async def set_waba_save_flag(self, company_id: int, value: bool | None) -> flags.WabaSaveFlag:
        """The company's override of `waba_save_organization_id` (None: back to the global default)."""
        return await flags.set_waba_save_flag(self.context, company_id, value)

    async def waba_save_flag(self, company_id: int) -> flags.WabaSaveFlag:
        """The company's `waba_save_organization_id`: its override and what new WABAs get."""
        return await flags.waba_save_flag(self.context, company_id)

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
        await provisioning.set_price(
            self.context,
            deduction_code,
            unit_price_minor=unit_price_minor,
            company_id=company_id,
            market=market,
            effective_from=effective_from,
        )

    async def set_webhook(self, company_id: int, *, url: str, secret: str | None = None) -> str:
        """Where the company's events go; the signing secret (generated when absent) is sealed at rest."""
        return await webhooks.set_webhook(self.database, self.sealer, company_id, url=url, secret=secret)

    async def delete_webhook(self, company_id: int) -> None:
        """No webhook any more: the company's later events are kept as skipped."""
        await webhooks.delete_webhook(self.database, company_id)

    async def webhook_secret(self, company_id: int) -> str | None:
        """The company's signing secret, opened (the demo's own receiver verifies with it); None without one."""
        return await webhooks.webhook_secret(self.database, self.sealer, company_id)

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
        return await self._group_commit.submit(deduction_rows.Prepared.of(request, self.sealer, service_name))

    async def deduct_batch(
        self, requests: Sequence[DeductionRequest], *, service_name: str | None = None
    ) -> list[BatchItemResult]:
        """One result per item, in order; items share transactions with whatever else charges their pool."""
        if len(requests) > limits.BATCH_MAX_ITEMS:
            raise BillingError(Rejection.INVALID_REQUEST, f"at most {limits.BATCH_MAX_ITEMS} items per batch")
        results: list[BatchItemResult | None] = [None] * len(requests)
        checked: list[int] = []
        prepared: list[deduction_rows.Prepared] = []
        for index, request in enumerate(requests):
            error = check_deduction(request)
            if error is not None:
                results[index] = BatchItemResult(str(request.unique_code), "rejected", error=error)
            else:
                checked.append(index)
                prepared.append(deduction_rows.Prepared.of(request, self.sealer, service_name))
        outcomes = await self._group_commit.submit_many(prepared)
        for index, outcome in zip(checked, outcomes, strict=True):
            results[index] = outcome
        answered: list[BatchItemResult] = []
        for index, result in enumerate(results):
            if result is None:
                raise RuntimeError(f"batch item {index} was left without an outcome")
            answered.append(result)
        return answered

    # -- refunds, payments, cycles, reads -----------------------------------

    async def refund(self, request: RefundRequest, *, service_name: str | None = None) -> RefundResult:
        """Give a deduction back by its unique_code; idempotent on refund_code."""
        return await refunds.refund(self.context, request, service_name=service_name)

    async def top_up(
        self,
        company_id: int,
        *,
        amount: int,
        payment_reference: str,
        service_name: str | None = None,
        waba_id: str | None = None,
    ) -> FundingResult:
        """Credit a payment: postpaid use first, the rest to `additional` (of `waba_id`'s package for v2)."""
        return await payments.fund(
            self.context,
            company_id,
            "top_up",
            amount_minor=amount,
            payment_reference=payment_reference,
            service_name=service_name,
            waba_id=waba_id,
        )

    async def settle_postpaid(
        self,
        company_id: int,
        *,
        amount: int,
        payment_reference: str,
        service_name: str | None = None,
        waba_id: str | None = None,
    ) -> FundingResult:
        """Record a paid postpaid bill; never more than postpaid has used (of `waba_id`'s package for v2)."""
        return await payments.fund(
            self.context,
            company_id,
            "settlement",
            amount_minor=amount,
            payment_reference=payment_reference,
            service_name=service_name,
            waba_id=waba_id,
        )

    async def reset_cycles(self, *, at: datetime | None = None) -> dict[int, int]:
        """Catch every pool up to the cycle in force at `at`; returns cycles reset per company."""
        return await cycles.reset_cycles(self.context, at=at)

    async def any_cycle_due(self, *, at: datetime) -> bool:
        """Whether some pool's cycle has ended by `at` (a cheap check before `reset_cycles`)."""
        return await cycles.any_due(self.context, at=at)

    async def ready(self) -> bool:
        """Whether the service can serve: its database answers."""
        return await self.database.ping()

    # -- alerts, auto-recharge, forecast ---------------------------------------

    async def alert_settings(self, company_id: int) -> AlertSettings:
        """The company's own alerts, auto-recharge and forecast warning days."""
        return await alert_settings.get_settings(self.context, company_id)

    async def set_alert_settings(
        self,
        company_id: int,
        *,
        balance_alerts: object | Keep = KEEP,
        auto_recharge: object | Keep = KEEP,
        forecast_warning_days: object | Keep = KEEP,
    ) -> AlertSettings:
        """Change what is given (each checked by the domain rules first); returns the settings now."""
        return await alert_settings.set_settings(
            self.context,
            company_id,
            balance_alerts=balance_alerts,
            auto_recharge=auto_recharge,
            forecast_warning_days=forecast_warning_days,
        )

    async def spend_basis(self, company_id: int, *, today: date) -> SpendBasis:
        """The forecast's basis for the company's local day `today` (read once a day per process)."""
        return await self._spend_bases.basis(company_id, today=today)

    async def expire_top_up_requests(self, *, at: datetime | None = None) -> int:
        """Report every auto-recharge request open for 24 h as expired; returns how many."""
        return await recharge.expire_top_up_requests(self.context, at=at or self.clock())

    async def warn_forecast_low(self, *, at: datetime | None = None) -> int:
        """Raise `balance_forecast_low` where the money runs out too early (once per package and cycle)."""
        return await forecasts.warn_forecast_low(self.context, at=at or self.clock())

    async def statements(
        self, company_id: int, *, limit: int, before: tuple[datetime, int | None] | None = None
    ) -> list[StatementView]:
        """The company's closed cycles, newest first; `before` pages on (cycle start, statement id)."""
        return await list_statements(self.database, company_id, limit=limit, before=before)

    async def balance(self, company_id: int) -> BalanceView:
        """The aggregated pool as of now (a due reset is shown as if it had run)."""
        return await cycles.balance(self.context, company_id)
