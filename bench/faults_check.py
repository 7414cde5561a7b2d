"""The fault run's checker: the clients' histories against the database, the receiver and the API.

Jepsen's bank test, for a ledger: what the clients were told must be what the database holds, exactly.
Each violation is a sentence naming the key or company; the run must end with none.

- every deduction (single or batch item) a client was told applied/replayed is in `deduction_requests`
  once, with the amount it was priced at, and its ledger portions add up to it;
- nothing is in the ledger that no client sent, and nothing a client was told `rejected` was written;
- the same for refunds (by refund code) and top-ups (by payment reference);
- no operation is left without a definite answer;
- `wabapool reconcile` passes; no bucket is negative and no postpaid line is past its limit;
- each company's pool total is what its history says (allowance + top-ups − deductions + refunds), and the
  ledger's last total, the internal balance and `billings/info` from each API process all say the same;
- every outbox event of the run's companies reached the receiver (none pending, none dead);
- the well-behaved companies' deduction p99 while the hostile tenant runs is within 3× of their quiet p99.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.faults_clients import CompanyPlan

# The bound: a noisy neighbour may at most triple another company's tail latency.
P99_RATIO_LIMIT = 3.0
# A p99 of fewer samples is a guess; the run must measure at least this many in each phase.
MIN_LATENCY_SAMPLES = 100
# The first moments of a phase still carry the previous phase's work (an export closing, a burst draining).
PHASE_SETTLE_SECONDS = 1.0
DEDUCTION_OPS = ("deduct", "batch_item")
# The settled balances are read until answered: a 503 (the database read past its 2 s timeout on a loaded
# machine) is retried for this long, a beat apart.
READ_ANSWER_DEADLINE_SECONDS = 60.0
READ_RETRY_SECONDS = 0.25


@dataclass
class Final:
    """The last (definite) answer a client was given for one key."""

    op: str
    key: str
    company: int
    told: str
    code: str | None
    amount: int | None
    record: dict[str, Any]


@dataclass
class Histories:
    records: list[dict[str, Any]]
    finals: dict[tuple[str, str], Final] = field(default_factory=dict)
    sent: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    @classmethod
    def load(cls, paths: Iterable[Path]) -> Histories:
        records: list[dict[str, Any]] = []
        for path in paths:
            if path.exists():
                records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        histories = cls(records)
        for record in records:
            op = record["op"]
            if op == "batch" or op.endswith("_counts"):
                continue
            kind = "deduct" if op in DEDUCTION_OPS else op
            histories.sent[kind].add(record["key"])
            if record["told"] != "unknown":
                histories.finals[(kind, record["key"])] = Final(
                    op,
                    record["key"],
                    record["company"],
                    record["told"],
                    record.get("code"),
                    record.get("amount"),
                    record,
                )
        return histories

    def outcomes(self) -> Counter[tuple[str, str]]:
        """(operation, what the client was told) → how many answers; `unknown` counts every unknown answer."""
        counts: Counter[tuple[str, str]] = Counter()
        for record in self.records:
            if record["op"].endswith("_counts"):
                continue
            told = record["told"]
            label = f"rejected({record.get('code')})" if told == "rejected" else told
            counts[(record["op"], label)] += 1
        return counts

    def server_errors(self) -> Counter[str]:
        """Answers with a 5xx other than 503 (a fault must be answered 503 `unavailable` / `outcome_unknown`)."""
        counts: Counter[str] = Counter()
        for record in self.records:
            status = record.get("status")
            if status is not None and status >= 500 and status != 503:
                counts[f"{record['op']} {status} {record.get('code')}"] += 1
        for name, count in self.hostile_counts().items():
            status = name.split()[-1]
            if status.isdigit() and int(status) >= 500 and int(status) != 503:
                counts[f"hostile {name}"] += count
        return counts

    def hostile_counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for record in self.records:
            if record["op"] == "hostile_counts":
                counts.update(record["counts"])
        return counts

    def acked(self, kind: str) -> dict[str, Final]:
        return {key: f for (k, key), f in self.finals.items() if k == kind and f.told in ("applied", "replayed")}

    def rejected(self, kind: str) -> dict[str, Final]:
        return {key: f for (k, key), f in self.finals.items() if k == kind and f.told == "rejected"}


@dataclass
class DatabaseState:
    deductions: dict[str, dict[str, Any]]
    ledger_by_deduction: dict[int, list[int]]
    refunds: dict[str, dict[str, Any]]
    payments: dict[str, dict[str, Any]]
    pools: dict[int, dict[str, Any]]
    last_ledger_total: dict[int, int]
    reset_entries: Counter[int]
    events: list[dict[str, Any]]


async def read_database(url: str, companies: list[int]) -> DatabaseState:
    connection = await asyncpg.connect(url)
    try:
        deductions = {
            r["unique_code"]: dict(r)
            for r in await connection.fetch(
                "SELECT id, company_id, unique_code, amount_minor FROM deduction_requests WHERE company_id = ANY($1)",
                companies,
            )
        }
        ledger: dict[int, list[int]] = defaultdict(list)
        for r in await connection.fetch(
            "SELECT deduction_request_id, amount_minor FROM ledger_entries "
            "WHERE company_id = ANY($1) AND kind = 'deduction'",
            companies,
        ):
            ledger[r["deduction_request_id"]].append(r["amount_minor"])
        refunds = {
            r["refund_code"]: dict(r)
            for r in await connection.fetch(
                "SELECT r.refund_code, r.company_id, r.amount_minor, d.unique_code FROM refunds r "
                "JOIN deduction_requests d ON d.id = r.deduction_request_id WHERE r.company_id = ANY($1)",
                companies,
            )
        }
        payments = {
            r["payment_reference"]: dict(r)
            for r in await connection.fetch(
                "SELECT payment_reference, company_id, kind, amount_minor FROM payments WHERE company_id = ANY($1)",
                companies,
            )
        }
        pools: dict[int, dict[str, Any]] = defaultdict(dict)
        for r in await connection.fetch(
            "SELECT p.company_id, p.id AS package_id, b.quota_type, b.balance_minor, b.limit_minor "
            "FROM organization_packages p JOIN billing_components c ON c.organization_package_id = p.id "
            "JOIN quota_buckets b ON b.billing_component_id = c.id "
            "WHERE p.company_id = ANY($1) AND p.closed_at IS NULL AND p.waba_id IS NULL",
            companies,
        ):
            pools[r["company_id"]]["package_id"] = r["package_id"]
            pools[r["company_id"]][r["quota_type"]] = (r["balance_minor"], r["limit_minor"])
        last_total = {
            r["company_id"]: r["total_after_minor"]
            for r in await connection.fetch(
                "SELECT DISTINCT ON (company_id) company_id, total_after_minor FROM ledger_entries "
                "WHERE company_id = ANY($1) ORDER BY company_id, id DESC",
                companies,
            )
        }
        resets = Counter(
            {
                r["company_id"]: r["n"]
                for r in await connection.fetch(
                    "SELECT company_id, count(*) AS n FROM ledger_entries WHERE company_id = ANY($1) "
                    "AND kind = 'reset' GROUP BY company_id",
                    companies,
                )
            }
        )
        events = [
            dict(r)
            for r in await connection.fetch(
                "SELECT event_id, company_id, event_type, delivered_at, dead_at, skipped_at, attempts, last_error "
                "FROM outbox_events WHERE company_id = ANY($1)",
                companies,
            )
        ]
        return DatabaseState(deductions, ledger, refunds, payments, pools, last_total, resets, events)
    finally:
        await connection.close()


async def pending_events(url: str, companies: list[int]) -> int:
    connection = await asyncpg.connect(url)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM outbox_events WHERE company_id = ANY($1) "
                "AND delivered_at IS NULL AND dead_at IS NULL AND skipped_at IS NULL",
                companies,
            )
        )
    finally:
        await connection.close()


def pool_total(pool: dict[str, Any]) -> int:
    return pool["initial"][0] + pool["additional"][0] - pool["postpaid"][0]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def fail(self, message: str) -> None:
        self.violations.append(message)


def check_money(histories: Histories, db: DatabaseState, plans: list[CompanyPlan], report: Report) -> None:
    """Exactly once, nothing invented, nothing rejected written, totals as the histories say."""
    acked = histories.acked("deduct")
    for key, final in acked.items():
        row = db.deductions.get(key)
        if row is None:
            report.fail(f"deduction {key} was acknowledged ({final.told}) but is not in the ledger")
            continue
        if final.amount is not None and row["amount_minor"] != final.amount:
            report.fail(f"deduction {key}: ledger amount {row['amount_minor']} ≠ priced {final.amount}")
        portions = db.ledger_by_deduction.get(row["id"], [])
        if sum(abs(p) for p in portions) != row["amount_minor"]:
            report.fail(f"deduction {key}: ledger portions {portions} do not add up to {row['amount_minor']}")
    for key in db.deductions:
        if key not in histories.sent["deduct"]:
            report.fail(f"deduction {key} is in the ledger but no client sent it")
    for key in histories.rejected("deduct"):
        if key in db.deductions:
            report.fail(f"deduction {key} was rejected ({histories.rejected('deduct')[key].code}) but is written")
    for kind, table in (("refund", db.refunds), ("top_up", db.payments)):
        for key, final in histories.acked(kind).items():
            row = table.get(key)
            if row is None:
                report.fail(f"{kind} {key} was acknowledged but is not written")
            elif final.op == "top_up" and row["amount_minor"] != final.amount:
                report.fail(f"top_up {key}: written {row['amount_minor']} ≠ sent {final.amount}")
            elif final.op == "refund" and row["amount_minor"] != final.amount:
                report.fail(f"refund {key}: written {row['amount_minor']} ≠ the deduction's {final.amount}")
        for key in table:
            if key not in histories.sent[kind]:
                report.fail(f"{kind} {key} is written but no client sent it")
        for key, final in histories.rejected(kind).items():
            if key in table:
                report.fail(f"{kind} {key} was rejected ({final.code}) but is written")
    for what, count in histories.server_errors().items():
        report.fail(f"{count} answers {what}: a failure must answer 503, never another 5xx")
    for (kind, key), final in histories.finals.items():
        if final.told == "indefinite":
            report.fail(f"{kind} {key} never got a definite answer (last: {final.code})")
    for plan in plans:
        pool = db.pools.get(plan.company_id)
        if pool is None:
            report.fail(f"company {plan.company_id} has no open pool")
            continue
        initial, additional, postpaid = pool["initial"], pool["additional"], pool["postpaid"]
        if initial[0] < 0 or additional[0] < 0 or postpaid[0] < 0:
            report.fail(f"company {plan.company_id}: a negative bucket {pool}")
        if postpaid[0] > postpaid[1]:
            report.fail(f"company {plan.company_id}: postpaid used {postpaid[0]} past its limit {postpaid[1]}")
        if db.reset_entries[plan.company_id]:
            continue  # a cycle reset ran meanwhile: the allowance came back, the history cannot say it
        expected = (
            plan.allowance
            + sum(f.amount or 0 for f in histories.acked("top_up").values() if f.company == plan.company_id)
            - sum(f.amount or 0 for f in acked.values() if f.company == plan.company_id)
            + sum(f.amount or 0 for f in histories.acked("refund").values() if f.company == plan.company_id)
        )
        total = pool_total(pool)
        if total != expected:
            report.fail(f"company {plan.company_id}: pool total {total} ≠ {expected} from the histories")
        last = db.last_ledger_total.get(plan.company_id, plan.allowance)
        if last != total:
            report.fail(f"company {plan.company_id}: the ledger's last total {last} ≠ the pool's {total}")


def _answered(http: httpx.Client, url: str, headers: dict[str, str]) -> httpx.Response:
    """GET until the answer is not a 503 (a read that timed out on a loaded machine says "retry", not a figure)."""
    deadline = time.monotonic() + READ_ANSWER_DEADLINE_SECONDS
    while True:
        try:
            response = http.get(url, headers=headers)
            if response.status_code != 503 or time.monotonic() > deadline:
                return response
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(READ_RETRY_SECONDS)


def check_balances(
    db: DatabaseState,
    plans: list[CompanyPlan],
    base_urls: list[str],
    api_key: str,
    tokens: dict[int, str],
    report: Report,
) -> None:
    """The internal balance and `billings/info` of every API process say what the pool rows say."""
    with httpx.Client(timeout=30) as http:
        for plan in plans:
            pool = db.pools.get(plan.company_id)
            if pool is None:
                continue
            total = pool_total(pool)
            for base in base_urls:
                internal = _answered(
                    http, f"{base}/iag/v1/quota-managements/{plan.company_id}/balance", {"X-Api-Key": api_key}
                )
                info = _answered(
                    http, f"{base}/api/core/v1/billings/info", {"Authorization": f"Bearer {tokens[plan.company_id]}"}
                )
                if internal.status_code != 200 or internal.json().get("total") != total:
                    report.fail(
                        f"company {plan.company_id}: {base} balance {internal.status_code} "
                        f"{internal.text[:200]} ≠ total {total}"
                    )
                if info.status_code != 200 or info.json()["balance"]["total"] != total:
                    report.fail(
                        f"company {plan.company_id}: {base} billings/info {info.status_code} "
                        f"{info.text[:200]} ≠ total {total}"
                    )
                elif info.json().get("stale"):
                    report.fail(f"company {plan.company_id}: {base} billings/info is stale after the settle")


def check_events(db: DatabaseState, seen: set[str], report: Report) -> None:
    states: Counter[str] = Counter()
    for event in db.events:
        if event["dead_at"] is not None:
            states["dead"] += 1
            report.fail(f"event {event['event_id']} ({event['event_type']}) dead-lettered: {event['last_error']}")
        elif event["skipped_at"] is not None:
            states["skipped"] += 1
            report.fail(f"event {event['event_id']} skipped: every company of the run has a webhook")
        elif event["delivered_at"] is None:
            states["pending"] += 1
            report.fail(f"event {event['event_id']} ({event['event_type']}) still pending after the settle")
        else:
            states["delivered"] += 1
        if event["event_id"] not in seen:
            report.fail(f"event {event['event_id']} ({event['event_type']}) never reached the receiver")
    report.figures["events"] = dict(states)
    report.figures["events_seen_by_receiver"] = len(seen)


def latency_samples(
    histories: Histories, phases: list[tuple[str, float, float]], well_behaved: set[int]
) -> dict[str, list[float]]:
    """Single deductions of the well-behaved companies answered at the first try, by phase."""
    samples: dict[str, list[float]] = defaultdict(list)
    for record in histories.records:
        if record["op"] != "deduct" or record["company"] not in well_behaved or record.get("attempt") != 1:
            continue
        if record["told"] not in ("applied", "replayed"):
            continue
        for name, start, end in phases:
            if start + PHASE_SETTLE_SECONDS <= record["t"] < end:
                samples[name].append(record["latency"])
    return samples


def check_latency(
    histories: Histories,
    phases: list[tuple[str, float, float]],
    well_behaved: set[int],
    report: Report,
    limit: float = P99_RATIO_LIMIT,
) -> None:
    """The well-behaved companies' deduction p99 beside the hostile tenant against their quiet p99."""
    samples = latency_samples(histories, phases, well_behaved)
    quiet, hostile = samples.get("quiet", []), samples.get("hostile", [])
    figures = {
        name: {"n": len(values), "p50_ms": percentile(values, 0.5) * 1e3, "p99_ms": percentile(values, 0.99) * 1e3}
        for name, values in (("quiet", quiet), ("hostile", hostile))
    }
    report.figures["latency"] = figures
    if len(quiet) < MIN_LATENCY_SAMPLES or len(hostile) < MIN_LATENCY_SAMPLES:
        report.fail(
            f"too few deductions measured for the p99 (quiet {len(quiet)}, hostile {len(hostile)}; "
            f"at least {MIN_LATENCY_SAMPLES} each)"
        )
        return
    ratio = figures["hostile"]["p99_ms"] / figures["quiet"]["p99_ms"]
    report.figures["latency"]["p99_ratio"] = ratio
    report.figures["latency"]["p99_ratio_limit"] = limit
    if ratio > limit:
        report.fail(
            f"well-behaved deduction p99 {figures['hostile']['p99_ms']:.1f} ms beside the hostile tenant "
            f"is {ratio:.1f}× the quiet {figures['quiet']['p99_ms']:.1f} ms (limit {limit:g}×)"
        )


def unhandled_errors(logs: Iterable[Path]) -> Counter[str]:
    """The last line of each traceback the API and worker processes logged as unhandled: the crash's cause."""
    causes: Counter[str] = Counter()
    for path in logs:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if '"unhandled_error"' not in line:
                continue
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                last = (record.get("exception") or "").strip().splitlines()[-1:] or [record.get("error_type", "?")]
                causes[f"{path.stem}: {last[0][:300]}"] += 1
    return causes


def read_state(url: str, companies: list[int]) -> DatabaseState:
    return asyncio.run(read_database(url, companies))


def count_pending(url: str, companies: list[int]) -> int:
    return asyncio.run(pending_events(url, companies))
