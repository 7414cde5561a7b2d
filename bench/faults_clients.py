"""The fault run's clients: processes that move money through the client SDK and keep a history of it.

Each client process owns some companies (no two processes share one, so each knows what it sent to its
companies) and runs a few loops per company: single deductions, batches, refunds of deductions it was told
were applied, and top-ups. Every operation keeps its idempotency key until it gets a definite answer:
applied, replayed, or rejected with a code that says nothing was written. A transport failure, a 503
(`unavailable`, `outcome_unknown`, `overloaded`) or an unreadable answer is `unknown`: the client sends the same
key again, to the other API process, until it is told. Each answer is one JSON line of the history file.

The hostile tenant (`hostile_main`) runs beside them: slow CSV downloads it barely reads, bursts of reads,
and bursts of large batches on its own pool, while the run's `hostile` flag is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from wabapool.client import AsyncWabapoolClient, DeductionItem, InvalidResponse, WabapoolError

# Rejections that do not say whether anything was written, or say "try again": the key is sent again.
UNKNOWN_CODES = frozenset(
    {
        "unavailable",
        "outcome_unknown",
        "overloaded",
        "service_unavailable",
        "rate_limited",
        "timeout",
        "transport_error",
    }
)
# One attempt of the SDK: a deduction answers in milliseconds; a restarting database takes seconds.
ATTEMPT_TIMEOUT_SECONDS = 10.0
# Between two tries of an unknown outcome: exponential with full jitter, capped.
RETRY_BACKOFF_SECONDS = 0.1
RETRY_BACKOFF_MAX_SECONDS = 2.0
PRICES = {"wa_utility_id": 100, "wa_marketing_id": 250}
BATCH_SIZES = (5, 30)
# How often the stop and phase flags are looked at while a loop idles.
FLAG_POLL_SECONDS = 0.05


@dataclass
class CompanyPlan:
    company_id: int
    wabas: list[str]
    allowance: int
    postpaid_limit: int
    top_up_range: tuple[int, int]


@dataclass
class ClientConfig:
    index: int
    base_urls: list[str]
    api_key: str
    companies: list[CompanyPlan]
    history: str
    seed: int
    loops_per_company: int = 2
    think_seconds: float = 0.03
    # Wall-clock time past which an operation still without a definite answer is recorded as `indefinite`.
    give_up_at: float = 0.0


@dataclass
class History:
    """Append-only JSON lines; flushed per line so a reader sees every answer that was given."""

    path: Path
    _file: Any = None

    def __post_init__(self) -> None:
        self._file = self.path.open("a", buffering=1)

    def write(self, **record: Any) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()


@dataclass
class Clients:
    """One SDK client per API process; an unknown outcome moves the next try to the other one."""

    sdks: list[AsyncWabapoolClient]
    history: History
    give_up_at: float
    rng: random.Random
    stop: Any  # multiprocessing.Event

    async def definite(self, op: str, key: str, company: int, call: Any, **details: Any) -> tuple[str, Any]:
        """Send until told; returns (told, result or error code) and writes every answer to the history."""
        attempt = 0
        while True:
            attempt += 1
            sdk = self.sdks[(attempt + company) % len(self.sdks)]
            started, wall = time.monotonic(), time.time()
            told, code, result, status = "unknown", None, None, None
            try:
                result = await call(sdk)
                told = "replayed" if getattr(result, "replayed", False) else "applied"
            except InvalidResponse as exc:
                code = exc.code
            except WabapoolError as exc:
                code, status = exc.code, exc.status_code
                # A 500 says nothing of the outcome (the checker counts it: a fault must answer 503).
                if code not in UNKNOWN_CODES and not (status is not None and status >= 500):
                    told = "rejected"
            latency = time.monotonic() - started
            if told != "unknown" or time.time() > self.give_up_at:
                if told == "unknown":
                    told = "indefinite"
                self.history.write(
                    op=op,
                    key=key,
                    company=company,
                    told=told,
                    code=code,
                    t=wall,
                    latency=latency,
                    attempt=attempt,
                    **details,
                    **_result_fields(result),
                )
                return told, result if told in ("applied", "replayed") else code
            self.history.write(
                op=op,
                key=key,
                company=company,
                told="unknown",
                code=code,
                status=status,
                t=wall,
                latency=latency,
                attempt=attempt,
                **details,
            )
            ceiling = min(RETRY_BACKOFF_MAX_SECONDS, RETRY_BACKOFF_SECONDS * 2 ** min(attempt, 8))
            await asyncio.sleep(self.rng.random() * ceiling)


def _result_fields(result: Any) -> dict[str, Any]:
    if result is None or not hasattr(result, "amount"):
        return {}
    return {"amount_told": result.amount, "value_after": result.value_after}


@dataclass
class CompanyState:
    plan: CompanyPlan
    refundable: list[tuple[str, int]] = field(default_factory=list)
    counter: int = 0

    def next_key(self, prefix: str, client: int) -> str:
        self.counter += 1
        return f"{prefix}-c{client}-{self.plan.company_id}-{self.counter}"


async def _deduct(clients: Clients, state: CompanyState, config: ClientConfig) -> None:
    plan = state.plan
    code = clients.rng.choice(sorted(PRICES))
    quantity = clients.rng.randint(1, 3)
    key = state.next_key("d", config.index)
    waba = clients.rng.choice(plan.wabas)
    told, result = await clients.definite(
        "deduct",
        key,
        plan.company_id,
        lambda sdk: sdk.deduct(plan.company_id, "wa", code, key, quantity, waba),
        amount=quantity * PRICES[code],
        waba=waba,
    )
    if told in ("applied", "replayed"):  # replayed: an earlier try whose answer was lost had applied it
        state.refundable.append((key, quantity * PRICES[code]))


async def _batch(clients: Clients, state: CompanyState, config: ClientConfig) -> None:
    """A batch; items told unknown are sent again (with their own keys) until every item is definite."""
    plan = state.plan
    batch_key = state.next_key("b", config.index)
    items: list[DeductionItem] = []
    amounts: dict[str, int] = {}
    for number in range(clients.rng.randint(*BATCH_SIZES)):
        code = clients.rng.choice(sorted(PRICES))
        quantity = clients.rng.randint(1, 3)
        key = f"{batch_key}-{number}"
        items.append(DeductionItem(plan.company_id, "wa", code, key, quantity, clients.rng.choice(plan.wabas)))
        amounts[key] = quantity * PRICES[code]
    await send_batch(clients, plan.company_id, batch_key, items, amounts, state.refundable)


async def send_batch(
    clients: Clients,
    company: int,
    batch_key: str,
    items: list[DeductionItem],
    amounts: dict[str, int],
    refundable: list[tuple[str, int]] | None,
) -> None:
    pending = list(items)
    round_number = 0
    while pending:
        round_number += 1
        told, result = await clients.definite(
            "batch",
            f"{batch_key}#{round_number}",
            company,
            lambda sdk, p=tuple(pending): sdk.deduct_batch(p),
            items=[item.unique_code for item in pending],
        )
        if told == "indefinite":
            for item in pending:
                clients.history.write(
                    op="batch_item",
                    key=item.unique_code,
                    company=company,
                    told="indefinite",
                    code=result,
                    t=time.time(),
                    amount=amounts[item.unique_code],
                )
            return
        retry: list[DeductionItem] = []
        for item, outcome in zip(pending, result, strict=True):
            code = outcome.error.code if outcome.error is not None else None
            if outcome.status == "rejected" and code in UNKNOWN_CODES:
                clients.history.write(
                    op="batch_item",
                    key=item.unique_code,
                    company=company,
                    told="unknown",
                    code=code,
                    t=time.time(),
                    amount=amounts[item.unique_code],
                )
                retry.append(item)
                continue
            told_item = outcome.status
            clients.history.write(
                op="batch_item",
                key=item.unique_code,
                company=company,
                told=told_item,
                code=code,
                t=time.time(),
                amount=amounts[item.unique_code],
                amount_told=outcome.deduction.amount if outcome.deduction is not None else None,
            )
            if told_item in ("applied", "replayed") and refundable is not None:
                refundable.append((item.unique_code, amounts[item.unique_code]))
        pending = retry
        if pending:
            await asyncio.sleep(clients.rng.random() * RETRY_BACKOFF_MAX_SECONDS)


async def _refund(clients: Clients, state: CompanyState, config: ClientConfig) -> None:
    if not state.refundable:
        return
    key, amount = state.refundable.pop(clients.rng.randrange(len(state.refundable)))
    plan = state.plan
    refund_code = f"r-{key}"
    await clients.definite(
        "refund",
        refund_code,
        plan.company_id,
        lambda sdk: sdk.refund(plan.company_id, key, refund_code, "message failed"),
        of=key,
        amount=amount,
    )


async def _top_up(clients: Clients, state: CompanyState, config: ClientConfig) -> None:
    plan = state.plan
    amount = clients.rng.randint(*plan.top_up_range)
    reference = state.next_key("p", config.index)
    await clients.definite(
        "top_up",
        reference,
        plan.company_id,
        lambda sdk: sdk.top_up(plan.company_id, amount, reference),
        amount=amount,
    )


OPERATIONS = ((_deduct, 60), (_batch, 12), (_refund, 18), (_top_up, 10))


async def _company_loop(clients: Clients, state: CompanyState, config: ClientConfig) -> None:
    functions = [function for function, _ in OPERATIONS]
    weights = [weight for _, weight in OPERATIONS]
    while not clients.stop.is_set():
        operation = clients.rng.choices(functions, weights)[0]
        await operation(clients, state, config)
        await asyncio.sleep(clients.rng.random() * 2 * config.think_seconds)


async def _client(config: ClientConfig, stop: Any) -> None:
    history = History(Path(config.history))
    sdks = [
        AsyncWabapoolClient(url, config.api_key, timeout_seconds=ATTEMPT_TIMEOUT_SECONDS, max_retries=1)
        for url in config.base_urls
    ]
    clients = Clients(sdks, history, config.give_up_at, random.Random(config.seed), stop)
    try:
        states = [CompanyState(plan) for plan in config.companies]  # one key counter per company, shared
        loops = [_company_loop(clients, state, config) for state in states for _ in range(config.loops_per_company)]
        await asyncio.gather(*loops)
    finally:
        for sdk in sdks:
            await sdk.aclose()
        history.close()


def client_main(config: ClientConfig, stop: Any) -> None:
    """The entry point of one client process (multiprocessing, spawn)."""
    asyncio.run(_client(config, stop))


# -- the hostile tenant ---------------------------------------------------------------------------------------


@dataclass
class HostileConfig:
    base_urls: list[str]
    api_key: str
    token: str
    company: CompanyPlan
    history: str
    seed: int
    give_up_at: float
    slow_exports: int = 4
    # Bytes read from each download per pause: a client that reads a few kilobytes a second.
    export_read_bytes: int = 4096
    export_pause_seconds: float = 0.25
    # A burst: this many reads at once (balance, logs, usage), and a batch this large on its own pool, then a pause.
    read_burst: int = 20
    batch_burst_items: int = 200
    burst_pause_seconds: float = 2.0


async def _slow_export(
    http: httpx.AsyncClient, config: HostileConfig, on: Any, stop: Any, counts: dict[str, int]
) -> None:
    while not stop.is_set():
        if not on.is_set():
            await asyncio.sleep(FLAG_POLL_SECONDS)
            continue
        url = random.choice(config.base_urls) + "/api/core/v1/download_broadcast_deduction"
        try:
            async with http.stream("GET", url) as response:
                counts[f"export {response.status_code}"] = counts.get(f"export {response.status_code}", 0) + 1
                async for _chunk in response.aiter_bytes(config.export_read_bytes):
                    if stop.is_set() or not on.is_set():
                        break
                    await asyncio.sleep(config.export_pause_seconds)
        except httpx.HTTPError as exc:
            counts[f"export {type(exc).__name__}"] = counts.get(f"export {type(exc).__name__}", 0) + 1
            await asyncio.sleep(0.2)


async def _read_bursts(
    http: httpx.AsyncClient, config: HostileConfig, on: Any, stop: Any, counts: dict[str, int]
) -> None:
    paths = ("/api/core/v1/billings/info", "/api/core/v1/mcc_logs?limit=100", "/api/core/v1/usage")

    async def one(path: str) -> None:
        try:
            response = await http.get(random.choice(config.base_urls) + path)
            name = f"read {response.status_code}"
        except httpx.HTTPError as exc:
            name = f"read {type(exc).__name__}"
        counts[name] = counts.get(name, 0) + 1

    while not stop.is_set():
        if not on.is_set():
            await asyncio.sleep(FLAG_POLL_SECONDS)
            continue
        await asyncio.gather(*(one(random.choice(paths)) for _ in range(config.read_burst)))
        await asyncio.sleep(config.burst_pause_seconds)


async def _batch_bursts(clients: Clients, config: HostileConfig, on: Any, stop: Any) -> None:
    plan = config.company
    number = 0
    while not stop.is_set():
        if not on.is_set():
            await asyncio.sleep(FLAG_POLL_SECONDS)
            continue
        number += 1
        batch_key = f"h-{plan.company_id}-{number}"
        items = [
            DeductionItem(
                plan.company_id, "wa", "wa_utility_id", f"{batch_key}-{i}", 1, plan.wabas[i % len(plan.wabas)]
            )
            for i in range(config.batch_burst_items)
        ]
        await send_batch(
            clients, plan.company_id, batch_key, items, {i.unique_code: PRICES[i.deduction_code] for i in items}, None
        )
        await asyncio.sleep(config.burst_pause_seconds)


async def _hostile(config: HostileConfig, on: Any, stop: Any) -> None:
    history = History(Path(config.history))
    sdks = [
        AsyncWabapoolClient(url, config.api_key, timeout_seconds=ATTEMPT_TIMEOUT_SECONDS, max_retries=1)
        for url in config.base_urls
    ]
    clients = Clients(sdks, history, config.give_up_at, random.Random(config.seed), stop)
    counts: dict[str, int] = {}
    limits = httpx.Limits(max_connections=config.read_burst + config.slow_exports + 8)
    headers = {"Authorization": f"Bearer {config.token}"}
    async with httpx.AsyncClient(headers=headers, timeout=30, limits=limits) as http:
        try:
            await asyncio.gather(
                *(_slow_export(http, config, on, stop, counts) for _ in range(config.slow_exports)),
                _read_bursts(http, config, on, stop, counts),
                _batch_bursts(clients, config, on, stop),
            )
        finally:
            history.write(op="hostile_counts", counts=counts, t=time.time())
            for sdk in sdks:
                with contextlib.suppress(Exception):
                    await sdk.aclose()
            history.close()


def hostile_main(config: HostileConfig, on: Any, stop: Any) -> None:
    """The entry point of the hostile tenant's process."""
    asyncio.run(_hostile(config, on, stop))


# -- well-behaved readers (the soak) -----------------------------------------------------------------------------


@dataclass
class ReaderConfig:
    base_urls: list[str]
    tokens: dict[int, str]
    history: str
    seed: int
    # Pause between two reads of one company; a CSV download every `export_every` reads.
    pause_seconds: float = 0.2
    export_every: int = 25


async def _reader_loop(
    http: httpx.AsyncClient, config: ReaderConfig, company: int, stop: Any, counts: dict[str, int]
) -> None:
    rng = random.Random(config.seed + company)
    headers = {"Authorization": f"Bearer {config.tokens[company]}"}
    paths = ("/api/core/v1/billings/info", "/api/core/v1/mcc_logs?limit=50", "/api/core/v1/usage")
    number = 0
    while not stop.is_set():
        number += 1
        base = rng.choice(config.base_urls)
        if number % config.export_every == 0:
            name = "export"
            try:
                async with http.stream("GET", base + "/api/core/v1/download_broadcast_deduction", headers=headers) as r:
                    async for _chunk in r.aiter_bytes():
                        pass
                    name = f"export {r.status_code}"
            except httpx.HTTPError as exc:
                name = f"export {type(exc).__name__}"
        else:
            path = rng.choice(paths)
            try:
                response = await http.get(base + path, headers=headers)
                name = f"{path.split('?')[0].rsplit('/', 1)[-1]} {response.status_code}"
            except httpx.HTTPError as exc:
                name = f"{path.split('?')[0].rsplit('/', 1)[-1]} {type(exc).__name__}"
        counts[name] = counts.get(name, 0) + 1
        await asyncio.sleep(rng.random() * 2 * config.pause_seconds)


async def _reader(config: ReaderConfig, stop: Any) -> None:
    counts: dict[str, int] = {}
    history = History(Path(config.history))
    async with httpx.AsyncClient(timeout=60) as http:
        try:
            await asyncio.gather(*(_reader_loop(http, config, company, stop, counts) for company in config.tokens))
        finally:
            history.write(op="reader_counts", counts=counts, t=time.time())
            history.close()


def reader_main(config: ReaderConfig, stop: Any) -> None:
    """The entry point of the well-behaved readers' process: balance, logs, usage, and whole CSV downloads."""
    asyncio.run(_reader(config, stop))
