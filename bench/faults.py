"""The fault run (issue 20): clients move money, a nemesis breaks things, a checker proves the totals.

    .venv/bin/python -m bench.faults                     # 5 minutes of faults
    .venv/bin/python -m bench.faults --short             # about a minute (what CI runs)
    .venv/bin/python -m bench.faults --duration 600 --seed 7 --json bench/results/faults.json

On its own PostgreSQL cluster (initdb into a temporary directory, a free port) and its own Redis, two
`wabapool serve` and two `wabapool worker` processes, a loopback webhook receiver, client processes with
histories (`bench.faults_clients`) and the hostile tenant. The run has four phases:

1. latency: slices alternating quiet and the hostile tenant's load, no other fault (the p99 comparison);
2. faults: the nemesis (`bench.faults_nemesis`) breaks something every second or two;
3. settle: faults healed; clients finish what they started (every unknown outcome retried until
   definite) and the worker drains the outbox;
4. check (`bench.faults_check`): prints operations by outcome, faults by kind and violations, writes JSON,
   exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.faults_check import (
    MIN_LATENCY_SAMPLES,
    P99_RATIO_LIMIT,
    Histories,
    Report,
    check_balances,
    check_events,
    check_latency,
    check_money,
    count_pending,
    latency_samples,
    read_state,
    unhandled_errors,
)
from bench.faults_clients import (
    ClientConfig,
    CompanyPlan,
    HostileConfig,
    client_main,
    hostile_main,
)
from bench.faults_cluster import Cluster, wait_until
from bench.faults_nemesis import KINDS, Nemesis
from bench.faults_receiver import Receiver

RESULTS = Path(__file__).parent / "results"
# The latency phase adds pairs of slices until each phase has its samples (a loaded machine answers fewer a
# second); past this it stops, and the checker says there were too few.
LATENCY_PHASE_DEADLINE_SECONDS = 300.0
# After the faults stop: clients finish their operations (each retried until definite) within this.
CLIENTS_SETTLE_DEADLINE_SECONDS = 120.0
# After the clients: the workers deliver every event (retries of at most a few seconds each) within this.
OUTBOX_SETTLE_DEADLINE_SECONDS = 180.0
# Provisioning over HTTP right after start: a loaded machine may answer slowly.
SETUP_TIMEOUT_SECONDS = 30.0
UNIT_PRICES = {"wa_utility_id": 100, "wa_marketing_id": 250}
WEBHOOK_SECRET_BYTES = 32


@dataclass
class RunOptions:
    duration: float = 300.0
    latency_slice: float = 6.0
    latency_slices: int = 10
    seed: int = 1
    clients: int = 2
    companies_per_client: int = 3
    hostile_rows: int = 20_000
    # Whole rounds of every fault kind, however long the duration: the short run sees each kind at least twice.
    min_rounds: int = 1
    # The issue's goal is 3x; a timed test on a shared, loaded machine passes a generous bound (tests/e2e).
    p99_ratio_limit: float = P99_RATIO_LIMIT
    json_path: Path | None = None
    keep: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def short(cls, **overrides: Any) -> RunOptions:
        """About a minute of faults, every kind a few times; the latency phase's slices shorter."""
        short = {"duration": 55.0, "latency_slice": 6.0, "latency_slices": 10, "hostile_rows": 5_000, "min_rounds": 2}
        return cls(**(short | overrides))


@dataclass
class RunResult:
    report: Report
    outcomes: Counter[tuple[str, str]]
    faults: list[dict[str, Any]]
    hostile: Counter[str]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.report.violations

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "violations": self.report.violations,
            "figures": self.report.figures,
            "outcomes": [{"op": op, "told": told, "count": n} for (op, told), n in sorted(self.outcomes.items())],
            "faults": self.faults,
            "hostile": dict(self.hostile),
            "seconds": self.seconds,
        }


def _enough_samples(histories: Histories, phases: list[tuple[str, float, float]], well_behaved: set[int]) -> bool:
    samples = latency_samples(histories, phases, well_behaved)
    return all(len(samples.get(name, [])) >= MIN_LATENCY_SAMPLES for name in ("quiet", "hostile"))


def company_plans(options: RunOptions, rng: random.Random) -> tuple[list[list[CompanyPlan]], CompanyPlan]:
    """Per client, its companies: some rich, some tight (they reach postpaid and quota_exceeded); and the hostile."""
    per_client: list[list[CompanyPlan]] = []
    company_id = 9_100
    for client in range(options.clients):
        plans = []
        for number in range(options.companies_per_client):
            company_id += 1
            tight = number % 2 == 1
            wabas = [f"{company_id}{w:03d}" for w in range(rng.randint(2, 4))]
            plans.append(
                CompanyPlan(
                    company_id,
                    wabas,
                    allowance=30_000 if tight else 50_000_000,
                    postpaid_limit=20_000 if tight else 0,
                    top_up_range=(2_000, 9_000) if tight else (10_000, 100_000),
                )
            )
        per_client.append(plans)
        del client
    hostile = CompanyPlan(9_999, ["9999001", "9999002"], allowance=10**12, postpaid_limit=0, top_up_range=(1, 1))
    return per_client, hostile


def provision(
    cluster: Cluster, receiver: Receiver, plans: list[CompanyPlan], hostile: CompanyPlan, rows: int, history: Path
) -> None:
    """Prices, companies, WABAs, webhooks; the hostile tenant's rows (the setup's own history: it is a client too)."""
    from bench.faults_clients import History
    from wabapool.client import DeductionItem, PackageTerms, WabapoolClient

    written = History(history)
    with WabapoolClient(cluster.apis[0].base_url, cluster.api_key, timeout_seconds=SETUP_TIMEOUT_SECONDS) as sdk:
        for code, price in UNIT_PRICES.items():
            sdk.put_price(code, price)
        for plan in [*plans, hostile]:
            sdk.put_company(plan.company_id, package=PackageTerms(plan.allowance, postpaid_limit=plan.postpaid_limit))
            for waba in plan.wabas:
                sdk.put_waba(plan.company_id, waba, f"WABA {waba}")
            sdk.put_webhook(plan.company_id, receiver.url, receiver.secret)
        # The hostile tenant's history: what its slow exports will stream.
        for start in range(0, rows, 1000):
            items = [
                DeductionItem(
                    hostile.company_id,
                    "wa",
                    "wa_utility_id",
                    f"seed-{n}",
                    1,
                    hostile.wabas[n % 2],
                    customer_name=f"Customer {n}",
                    phone_number=f"+62812{n:07d}",
                )
                for n in range(start, min(rows, start + 1000))
            ]
            result = sdk.deduct_batch(items)
            if result.rejected:
                raise RuntimeError(f"seeding the hostile tenant failed: {result.rejected[0]}")
            for item in result:
                written.write(
                    op="batch_item",
                    key=item.unique_code,
                    company=hostile.company_id,
                    told=item.status,
                    code=None,
                    t=time.time(),
                    amount=UNIT_PRICES["wa_utility_id"],
                )
    written.close()


def secret() -> str:
    import base64
    import secrets

    return "whsec_" + base64.b64encode(secrets.token_bytes(WEBHOOK_SECRET_BYTES)).decode()


def run(options: RunOptions, console: Console) -> RunResult:
    from wabapool.security import issue_token

    started = time.monotonic()
    rng = random.Random(options.seed)
    cluster = Cluster.create(options.extra_env)
    receiver = Receiver(secret())
    context = multiprocessing.get_context("spawn")
    stop, hostile_on = context.Event(), context.Event()
    processes: list[Any] = []
    report = Report()
    nemesis: Nemesis | None = None
    history_paths: list[Path] = []
    phases: list[tuple[str, float, float]] = []
    try:
        console.print(
            f"[bold]fault run[/] seed {options.seed}, {options.duration:g} s of faults, in {cluster.directory}"
        )
        receiver.start()
        cluster.start()
        per_client, hostile_plan = company_plans(options, rng)
        plans = [plan for group in per_client for plan in group]
        setup_history = cluster.directory / "history-setup.jsonl"
        history_paths.append(setup_history)
        provision(cluster, receiver, plans, hostile_plan, options.hostile_rows, setup_history)
        tokens = {
            plan.company_id: issue_token(
                company_id=plan.company_id, role="owner", secret=cluster.jwt_secret, ttl_seconds=24 * 3600
            )
            for plan in [*plans, hostile_plan]
        }
        base_urls = [api.base_url for api in cluster.apis]
        total_seconds = options.latency_slice * options.latency_slices + options.duration
        give_up_at = time.time() + total_seconds + CLIENTS_SETTLE_DEADLINE_SECONDS
        for index, group in enumerate(per_client):
            path = cluster.directory / f"history-{index}.jsonl"
            history_paths.append(path)
            config = ClientConfig(
                index, base_urls, cluster.api_key, group, str(path), options.seed * 100 + index, give_up_at=give_up_at
            )
            processes.append(context.Process(target=client_main, args=(config, stop), name=f"client{index}"))
        hostile_path = cluster.directory / "history-hostile.jsonl"
        history_paths.append(hostile_path)
        hostile_config = HostileConfig(
            base_urls,
            cluster.api_key,
            tokens[hostile_plan.company_id],
            hostile_plan,
            str(hostile_path),
            options.seed * 100 + 99,
            give_up_at,
        )
        processes.append(context.Process(target=hostile_main, args=(hostile_config, hostile_on, stop), name="hostile"))
        for process in processes:
            process.start()

        console.print("phase 1: latency, quiet and hostile slices alternating")
        well_behaved = {plan.company_id for plan in plans}
        latency_deadline = time.monotonic() + LATENCY_PHASE_DEADLINE_SECONDS
        number = 0
        while number < options.latency_slices or (
            number % 2 == 0
            and time.monotonic() < latency_deadline
            and not _enough_samples(Histories.load(history_paths), phases, well_behaved)
        ):
            name = "hostile" if number % 2 else "quiet"
            (hostile_on.set if name == "hostile" else hostile_on.clear)()
            begin = time.time()
            time.sleep(options.latency_slice)  # the slice's length is the measurement window, not an outcome
            phases.append((name, begin, time.time()))
            number += 1
        hostile_on.clear()

        console.print(f"phase 2: faults for {options.duration:g} s")
        nemesis = Nemesis(cluster, receiver, hostile_on, random.Random(options.seed))
        nemesis.run(options.duration, threading.Event(), options.min_rounds)

        console.print("phase 3: settle (faults healed, clients finish, outbox drains)")
        for problem in nemesis.heal():
            report.fail(f"after the faults: {problem}")
        stop.set()
        deadline = time.monotonic() + CLIENTS_SETTLE_DEADLINE_SECONDS
        for process in processes:
            process.join(max(1.0, deadline - time.monotonic()))
            if process.is_alive():
                report.fail(f"{process.name} did not finish within {CLIENTS_SETTLE_DEADLINE_SECONDS:g} s of the stop")
                process.kill()
            elif process.exitcode != 0:
                report.fail(f"{process.name} exited with {process.exitcode}")
        companies = [plan.company_id for plan in [*plans, hostile_plan]]
        try:
            wait_until(
                lambda: count_pending(cluster.postgres.url, companies) == 0,
                OUTBOX_SETTLE_DEADLINE_SECONDS,
                "every outbox event delivered",
            )
        except TimeoutError as exc:
            report.fail(str(exc))
        for process in (*cluster.apis, *cluster.workers):
            if process.process is not None and process.process.poll() is not None:
                report.fail(f"{process.kind} {process.port or ''} exited on its own ({process.process.returncode})")

        console.print("phase 4: check")
        histories = Histories.load(history_paths)
        state = read_state(cluster.postgres.url, companies)
        check_money(histories, state, [*plans, hostile_plan], report)
        check_balances(state, [*plans, hostile_plan], base_urls, cluster.api_key, tokens, report)
        check_events(state, receiver.snapshot(), report)
        check_latency(histories, phases, {plan.company_id for plan in plans}, report, options.p99_ratio_limit)
        crashes = unhandled_errors((cluster.directory / "logs").glob("*.log"))
        report.figures["unhandled_errors"] = dict(crashes)
        reconcile = cluster.run_cli("reconcile")
        if reconcile.returncode != 0:
            report.fail(f"wabapool reconcile exited {reconcile.returncode}: {reconcile.stdout[-2000:]}")
        for fault in nemesis.faults:
            if fault.error:
                report.fail(f"fault {fault.kind} {fault.target}: {fault.error}")
        report.figures["receiver"] = {
            "deliveries": receiver.deliveries,
            "forged": receiver.forged,
            "answers": dict(receiver.answers),
        }
        if receiver.forged:
            report.fail(f"{receiver.forged} webhook deliveries failed signature verification")
        report.figures["restarts"] = {
            f"{p.kind}:{p.port or i}": p.starts - 1 for i, p in enumerate((*cluster.apis, *cluster.workers))
        }
        return RunResult(
            report,
            histories.outcomes(),
            [asdict(f) for f in nemesis.faults],
            histories.hostile_counts(),
            time.monotonic() - started,
        )
    finally:
        stop.set()
        for process in processes:
            if process.is_alive():
                process.kill()
        receiver.stop()
        # A run with violations keeps its logs, histories and data: what the checker's table points at.
        keep = options.keep or bool(report.violations)
        if keep:
            console.print(f"kept {cluster.directory} (logs/, history-*.jsonl, pg/)")
        cluster.destroy(keep=keep)


def render(result: RunResult, console: Console) -> None:
    outcomes = Table(title="operations by outcome")
    outcomes.add_column("operation")
    outcomes.add_column("told")
    outcomes.add_column("answers", justify="right")
    for (op, told), count in sorted(result.outcomes.items()):
        outcomes.add_row(op, told, f"{count:,}")
    console.print(outcomes)
    faults = Table(title="faults by kind")
    faults.add_column("kind")
    faults.add_column("injected", justify="right")
    faults.add_column("failed to inject/recover", justify="right")
    by_kind = Counter(f["kind"] for f in result.faults)
    errors = Counter(f["kind"] for f in result.faults if f["error"])
    for kind in KINDS:
        faults.add_row(kind, str(by_kind[kind]), str(errors[kind]))
    console.print(faults)
    figures = Table(title="figures")
    figures.add_column("what")
    figures.add_column("value")
    for name, value in result.report.figures.items():
        figures.add_row(name, json.dumps(value, default=str))
    figures.add_row("hostile tenant answers", json.dumps(dict(result.hostile)))
    figures.add_row("seconds", f"{result.seconds:.0f}")
    console.print(figures)
    violations = Table(title=f"violations: {len(result.report.violations)}")
    violations.add_column("violation", overflow="fold")
    for violation in result.report.violations[:200]:
        violations.add_row(violation, style="red")
    if len(result.report.violations) > 200:
        violations.add_row(f"… and {len(result.report.violations) - 200} more", style="red")
    console.print(violations)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="about a minute of faults (CI)")
    parser.add_argument("--duration", type=float, help="seconds of faults (default 300, 55 with --short)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--json", type=Path, help="where to write the result (default bench/results/faults-*.json)")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs, histories, data)")
    parser.add_argument(
        "--p99-limit",
        type=float,
        default=P99_RATIO_LIMIT,
        help=f"well-behaved p99 beside the hostile tenant / quiet p99 at most this (default {P99_RATIO_LIMIT:g})",
    )
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {
        "seed": args.seed,
        "clients": args.clients,
        "keep": args.keep,
        "p99_ratio_limit": args.p99_limit,
    }
    if args.duration is not None:
        overrides["duration"] = args.duration
    options = RunOptions.short(**overrides) if args.short else RunOptions(**overrides)
    console = Console()
    result = run(options, console)
    render(result, console)
    path = args.json or RESULTS / f"faults-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2, default=str))
    console.print(f"wrote {path}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
