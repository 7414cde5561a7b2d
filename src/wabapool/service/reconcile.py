"""Prove that every balance is what its ledger says, for every company."""

from __future__ import annotations

from dataclasses import dataclass, field

from wabapool.domain.pool import QuotaType
from wabapool.storage import audit
from wabapool.storage.database import Database


@dataclass(slots=True)
class ReconcileReport:
    checks: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


async def reconcile(database: Database) -> ReconcileReport:
    """Buckets = ledger sums; postpaid within limit; deductions = their portions; no code twice."""
    report = ReconcileReport()
    async with database.read() as connection:
        buckets = await audit.bucket_balances(connection)
        sums = await audit.ledger_bucket_sums(connection)
        mismatched = await audit.deductions_not_matching_entries(connection)
        refunds = await audit.refunds_not_matching_entries(connection)
        twice = await audit.unique_codes_applied_twice(connection)
        report.checks["deductions"] = await audit.deduction_count(connection)
    report.checks["buckets"] = len(buckets)
    report.checks["companies"] = len({row.company_id for row in buckets})
    for row in buckets:
        from_ledger = sums.get((row.package_id, row.quota_type), 0)
        if from_ledger != row.balance_minor:
            report.violations.append(
                f"company {row.company_id} bucket {row.quota_type}: stored {row.balance_minor}, ledger {from_ledger}"
            )
        if row.quota_type == QuotaType.POSTPAID and row.balance_minor > row.limit_minor:
            report.violations.append(
                f"company {row.company_id} postpaid used {row.balance_minor} is past its limit {row.limit_minor}"
            )
    for row in mismatched:
        report.violations.append(
            f"company {row.company_id} deduction {row.unique_code}: amount {row.amount_minor}, "
            f"portions {row.taken} in {row.entries} entries for {row.allocations} allocations"
        )
    for row in refunds:
        report.violations.append(
            f"company {row.company_id} refund {row.refund_code}: amount {row.amount_minor}, credited {row.credited}"
        )
    for row in twice:
        report.violations.append(f"company {row.company_id} unique_code {row.unique_code} applied {row.times} times")
    return report
