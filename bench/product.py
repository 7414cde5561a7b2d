"""wabapool under the same load: provisioning, the two sending paths, and the check after a cell."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text

from bench.stats import Check, Deadline, SenderStats
from bench.workload import (
    BILLING_CODE,
    DEDUCTION_CODE,
    UNIT_PRICE_MINOR,
    WABAS_PER_POOL,
    Funding,
    Message,
    company_id_of,
    waba_id_of,
)
from wabapool import bootstrap
from wabapool.domain.caps import SpendCap
from wabapool.pii import PiiSealer
from wabapool.service import BatchItemResult, BillingService, CompanyTerms, DeductionRequest, PackageTerms
from wabapool.service.models import KEEP
from wabapool.service.reconcile import reconcile
from wabapool.storage import audit
from wabapool.storage.database import Database
from wabapool.storage.tables import deduction_requests, ledger_entries, metadata

SERVICE_NAME = "bench"
PRICE_EFFECTIVE_FROM = datetime(2025, 7, 1, tzinfo=UTC)
# Pools provisioned at once: enough to overlap round trips, few enough to leave connections to others.
PROVISION_CONCURRENCY = 8


# The bench's own PII key (its databases are throwaway); the built-in development key is only --demo's.
BENCH_PII_KEYS = "bench:" + base64.b64encode(b"wabapool bench pii key, 32 bytes").decode()


def service(database: Database, **options: Any) -> BillingService:
    """A service wired by the bootstrap on `database`, sealing with the bench key (`clock=` and the rest as given)."""
    return bootstrap.billing_service(database, sealer=PiiSealer(BENCH_PII_KEYS), **options)


class FixedClock:
    """One instant for a whole cell: a real clock could cross a cycle start mid-run."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def request_of(message: Message) -> DeductionRequest:
    return DeductionRequest(
        company_id=message.company_id,
        billing_code=BILLING_CODE,
        deduction_code=DEDUCTION_CODE,
        unique_code=message.unique_code,
        quantity=message.quantity,
        waba_id=message.waba_id,
    )


async def reset(database: Database) -> None:
    """Empty every wabapool table (the bench database is the bench's own)."""
    names = [table.name for table in reversed(metadata.sorted_tables)]
    async with database.transaction() as connection:
        if database.is_sqlite:
            for name in names:
                await connection.execute(text(f"DELETE FROM {name}"))
        else:
            await connection.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))


async def provision(service: BillingService, fundings: list[Funding], *, capped: bool = False) -> None:
    """Each pool: a v3 company with its allowance and postpaid limit, its WABAs, and a top-up.

    With `capped`, every WABA gets a spending cap of the pool's whole funding: the cap rule runs on every
    deduction and never refuses one, so the cell's check is the uncapped one's.
    """
    await service.set_price(DEDUCTION_CODE, unit_price_minor=UNIT_PRICE_MINOR, effective_from=PRICE_EFFECTIVE_FROM)
    gate = asyncio.Semaphore(PROVISION_CONCURRENCY)

    async def one(pool_index: int, funding: Funding) -> None:
        company_id = company_id_of(pool_index)
        async with gate:
            package = PackageTerms(allowance=funding.initial_minor, postpaid_limit=funding.postpaid_limit_minor)
            await service.provision_company(company_id, CompanyTerms(package=package))
            funded = funding.initial_minor + funding.additional_minor + funding.postpaid_limit_minor
            for waba_index in range(WABAS_PER_POOL):
                await service.provision_waba(
                    company_id,
                    waba_id_of(pool_index, waba_index),
                    name=f"Bench WABA {waba_index + 1}",
                    spend_cap=SpendCap(funded) if capped else KEEP,
                )
            if funding.additional_minor:
                await service.top_up(
                    company_id, amount=funding.additional_minor, payment_reference=f"bench-funding-{pool_index}"
                )

    await asyncio.gather(*(one(index, funding) for index, funding in enumerate(fundings)))


def _count(stats: SenderStats, outcome: BatchItemResult) -> None:
    if outcome.status == "applied":
        stats.applied += 1
    elif outcome.status == "replayed":
        stats.replayed += 1
    else:
        stats.rejected += 1
        if outcome.error is not None and len(stats.error_samples) < 5:
            stats.error_samples.append(f"rejected: {outcome.error.code.value}")


async def send_single(service: BillingService, queue: list[Message], stats: SenderStats, deadline: Deadline) -> None:
    """One sender awaiting one deduction at a time (the group commit gathers concurrent ones)."""
    for message in queue:
        if deadline.passed():
            return
        started = time.perf_counter()
        stats.sent += 1
        stats.calls += 1
        try:
            outcome = await service.deduct_one(request_of(message), service_name=SERVICE_NAME)
        except Exception as error:  # counted and reported; the check fails on any error
            stats.note_error(error)
            continue
        stats.latencies_seconds.append(time.perf_counter() - started)
        _count(stats, outcome)


async def send_batches(
    service: BillingService, batches: list[list[Message]], stats: SenderStats, deadline: Deadline
) -> None:
    """One sender calling deduct_batch; latency is per call."""
    for batch in batches:
        if deadline.passed():
            return
        started = time.perf_counter()
        stats.sent += len(batch)
        stats.calls += 1
        try:
            outcomes = await service.deduct_batch([request_of(m) for m in batch], service_name=SERVICE_NAME)
        except Exception as error:  # counted and reported; the check fails on any error
            stats.note_error(error)
            continue
        stats.latencies_seconds.append(time.perf_counter() - started)
        for outcome in outcomes:
            _count(stats, outcome)


async def check(database: Database, *, applied: int) -> Check:
    """reconcile passes; applied = deduction rows = deductions in the ledger; postpaid within its limit."""
    result = Check()
    report = await reconcile(database)
    result.violations.extend(f"reconcile: {violation}" for violation in report.violations)
    async with database.read() as connection:
        rows = (await connection.execute(select(func.count()).select_from(deduction_requests))).scalar_one()
        in_ledger = (
            await connection.execute(
                select(func.count(func.distinct(ledger_entries.c.deduction_request_id))).where(
                    ledger_entries.c.kind == "deduction"
                )
            )
        ).scalar_one()
        bucket_rows = await audit.bucket_balances(connection)
    for row in bucket_rows:
        if row.quota_type == "postpaid" and row.balance_minor > row.limit_minor:
            result.violations.append(
                f"company {row.company_id}: postpaid used {row.balance_minor} is past its limit {row.limit_minor}"
            )
    if rows != applied:
        result.violations.append(f"senders applied {applied} deductions but {rows} deduction rows exist")
    if in_ledger != applied:
        result.violations.append(f"senders applied {applied} deductions but the ledger holds {in_ledger}")
    result.figures = {
        "deduction_rows": int(rows),
        "deductions_in_ledger": int(in_ledger),
        "buckets_reconciled": report.checks.get("buckets", 0),
    }
    return result
