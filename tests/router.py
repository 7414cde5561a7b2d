"""The router check: every statement the product sends to PostgreSQL on a company's table names one company.

On Citus a statement that pins one `company_id` goes to one shard (a "router"
query); one that does not fans out to every shard. The recorder sees every
statement on PostgreSQL: SQLAlchemy's (`before_cursor_execute` on every
engine) and those the product runs on the asyncpg connection underneath
(`storage.pg`, COPY), with their parameters. A statement is the product's when
the innermost frame that sent it is in `src/wabapool` (a test's own queries,
its assertions and TRUNCATEs, are not judged).

Pinned means, read from the SQL text and the bound values:
- every `company_id = $n` / `= ANY ($n)` / `IN (…)` / `company_id` column of an
  INSERT (VALUES, or `unnest($n)` arrays) together binds exactly one value;
- a SELECT, UPDATE or DELETE has at least one such condition;
- every JOIN of a company's table names `company_id` in its ON clause
  (co-located: a shard joins its own rows);
- COPY into a company's table carries one company's rows.

`ALLOWED` names the statements that may span companies, by the product
function that sends them, with the reason and how each runs on Citus.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wabapool.storage import distribution

_PRODUCT = str(Path(__import__("wabapool").__file__).parent) + "/"
# Frames that only carry a statement (the driver seam, the transaction boundary): the sender is further out.
_CARRIERS = (_PRODUCT + "storage/pg.py", _PRODUCT + "storage/database.py")
_COMPANY_TABLES = frozenset(distribution.COMPANY_TABLES)
# Allowances that hold for whatever a function sends through the storage functions it calls.
_STACK_ALLOWED = frozenset({"wabapool.service.deductions:apply_group"})


@dataclass(frozen=True)
class Allowed:
    reason: str
    citus: str


# Product functions (module:function) whose statements may span companies.
ALLOWED: dict[str, Allowed] = {
    "wabapool.storage.outbox:claim_heads": Allowed(
        "The worker's claim of due events: the oldest pending event of every company, leased with SKIP LOCKED.",
        "Runs on every shard in parallel (a multi-shard SELECT … FOR UPDATE SKIP LOCKED and UPDATE by id); "
        "each claim is small (a batch of heads) and workers never wait on each other.",
    ),
    "wabapool.storage.outbox:oldest_pending_created_at": Allowed(
        "The outbox lag metric: the oldest pending event of any company.",
        "A multi-shard min() over the partial index of pending events, once per worker round.",
    ),
    "wabapool.storage.package_scans:due_package_ids": Allowed(
        "The monthly reset's scan of packages whose cycle ended, across companies.",
        "A multi-shard SELECT on (closed_at, cycle_end); each package is then reset in a transaction "
        "of its own that pins its company (a router transaction).",
    ),
    "wabapool.storage.package_scans:expired_top_up_requests": Allowed(
        "The worker's sweep of auto-recharge requests open 24 h, across companies (issue 25).",
        "A multi-shard SELECT … LIMIT n on the partial index of open requests; each is then expired in a "
        "transaction of its own that pins its company (a router transaction).",
    ),
    "wabapool.storage.usage:companies_with_usage_since": Allowed(
        "The worker's forecast sweep: the companies that spent in the basis days, across companies (issue 25).",
        "A multi-shard SELECT DISTINCT company_id; each company is then read and warned in a router transaction.",
    ),
    "wabapool.storage.statements:any_cycle_due": Allowed(
        "The worker's check whether any cycle has ended (decides whether the reset runs this round).",
        "A multi-shard SELECT … LIMIT 1.",
    ),
    "wabapool.storage.audit": Allowed(
        "`wabapool reconcile`: the operator's check of every company's balances against the ledger.",
        "Multi-shard aggregates; their joins and groups name company_id, so each shard answers for its "
        "own companies and nothing is repartitioned.",
    ),
    "wabapool.storage.backfill:companies_to_move": Allowed(
        "`wabapool backfill --all`: the operator's list of v2 companies still to move.",
        "A multi-shard SELECT; each company is then moved in a router transaction of its own.",
    ),
    "wabapool.service.pii_keys": Allowed(
        "`wabapool pii rotate`: the operator re-seals every stored value, in id order, resumable.",
        "Multi-shard keyset batches by id; each batch's UPDATE is a multi-shard transaction (2PC).",
    ),
    "wabapool.storage.outbox:replay": Allowed(
        "`wabapool events replay EVENT_ID`: the operator names an event by its id alone.",
        "A multi-shard UPDATE on the unique (event_id, company_id) index: one shard has the row.",
    ),
    "wabapool.storage.outbox:get_event": Allowed(
        "`wabapool events replay EVENT_ID` reads the event back by its id alone.",
        "A multi-shard SELECT on the unique (event_id, company_id) index.",
    ),
    "wabapool.storage.outbox:list_events": Allowed(
        "`wabapool events list|dead` without --company-id: the operator's view of every company's events.",
        "A multi-shard SELECT … ORDER BY id DESC LIMIT n (merged on the coordinator).",
    ),
    "wabapool.service.deductions:apply_group": Allowed(
        "The group commit across companies (issue 23): deductions of different companies share one "
        "transaction, so its lock, look-up and writes name every company of the group. Allowed for every "
        "statement sent while a group is applied (matched anywhere in the sender's stack).",
        "On Citus a group of companies on different nodes is a multi-node transaction (2PC: an extra round "
        "trip to each node and a prepared-transaction record); keep groups per company there, or per shard.",
    ),
    "wabapool.storage.migrations": Allowed(
        "Alembic migrations: schema changes and their backfills touch every row.",
        "DDL is propagated to every shard by the coordinator; data backfills run as multi-shard UPDATEs.",
    ),
}


@dataclass(frozen=True)
class Statement:
    sql: str
    parameters: Any  # a tuple, a list of tuples (executemany), or for COPY the records
    origin: str  # module:function of the product frame that sent it ("" when a test's own)
    columns: tuple[str, ...] = ()  # COPY's columns
    callers: tuple[str, ...] = ()  # every product function further out in the stack


@dataclass
class Recorder:
    statements: list[Statement] = field(default_factory=list)

    def violations(self) -> list[str]:
        return [problem for statement in self.statements for problem in judge(statement)]

    def clear(self) -> None:
        self.statements.clear()


_forced_origin: contextvars.ContextVar[str | None] = contextvars.ContextVar("forced_origin", default=None)


@contextlib.contextmanager
def sent_as(origin: str) -> Iterator[None]:
    """Record statements as sent by `origin` (a module:function): how the recorder's own test acts as product."""
    token = _forced_origin.set(origin)
    try:
        yield
    finally:
        _forced_origin.reset(token)


def origin_of(*stacks: Any) -> str:
    """The innermost product function in these stacks (innermost first; each walked through its awaiting
    coroutines), as module:function, or "" when none is the product's."""
    forced = _forced_origin.get()
    if forced is not None:
        return forced
    for frame in stacks:
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename.startswith(_PRODUCT) and not filename.startswith(_CARRIERS):
                module = "wabapool." + filename[len(_PRODUCT) : -len(".py")].replace("/", ".")
                return f"{module}:{frame.f_code.co_name}"
            frame = frame.f_back
    return ""


def callers_of(*stacks: Any) -> tuple[str, ...]:
    """Every product function in these stacks (module:function), innermost first."""
    found = []
    for frame in stacks:
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename.startswith(_PRODUCT):
                module = "wabapool." + filename[len(_PRODUCT) : -len(".py")].replace("/", ".")
                found.append(f"{module}:{frame.f_code.co_name}")
            frame = frame.f_back
    return tuple(found)


def allowed(origin: str) -> Allowed | None:
    module, _, function = origin.partition(":")
    for key, allowance in ALLOWED.items():
        allowed_module, _, allowed_function = key.partition(":")
        if allowed_function:
            if module == allowed_module and function == allowed_function:
                return allowance
        elif module == allowed_module or module.startswith(allowed_module + "."):
            return allowance
    return None


_TABLE = re.compile(r'\b(?:FROM|JOIN|UPDATE|INTO|TABLE)\s+"?(\w+)"?', re.IGNORECASE)
_PARAM = r"(?:\$(\d+)(?:::[\w\[\]]+(?:\(\d+\))?)?|(?<![\w$.])(-?\d+)\b)"
_EQUALS = re.compile(r"\bcompany_id\s*=\s*" + _PARAM, re.IGNORECASE)
_ANY = re.compile(r"\bcompany_id\s*=\s*ANY\s*\(\s*" + _PARAM + r"\s*\)", re.IGNORECASE)
_IN = re.compile(r"\bcompany_id\s+IN\s*\(([^()]*)\)", re.IGNORECASE)
_INSERT = re.compile(r"\bINSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*(VALUES|SELECT)\b", re.I)
# Where the rows of an INSERT end: its conflict clause, its RETURNING, a SELECT's FROM, the CTE's end.
_INSERT_END = re.compile(r"\bON\s+CONFLICT\b|\bRETURNING\b|\bFROM\b", re.I)
_JOIN = re.compile(
    r"\bJOIN\s+(\w+)(?:\s+(?:AS\s+)?(?!ON\b)\w+)?\s+ON\s+(.*?)(?=\bJOIN\b|\bWHERE\b|\bGROUP\b|\bORDER\b|\)\s*$|$)",
    re.I | re.S,
)


def _parameter_sets(statement: Statement) -> list[Sequence[Any]]:
    parameters = statement.parameters
    if parameters is None:
        return [()]
    if isinstance(parameters, list) and parameters and isinstance(parameters[0], (list, tuple)):
        return parameters
    return [parameters]


def _bound(token_number: str | None, literal: str | None, parameter_sets: list[Sequence[Any]]) -> set[Any]:
    if literal is not None:
        return {int(literal)}
    index = int(token_number or 0) - 1
    values: set[Any] = set()
    for parameters in parameter_sets:
        value = parameters[index] if 0 <= index < len(parameters) else None
        if isinstance(value, (list, tuple)):
            values.update(value)
        else:
            values.add(value)
    return values


def tables_of(sql: str) -> set[str]:
    return {name for name in _TABLE.findall(sql) if name in _COMPANY_TABLES}


def judge(statement: Statement) -> list[str]:
    """Why this statement does not pin one company (empty: it does, or it is allowed, or not the product's)."""
    if not statement.origin or allowed(statement.origin) is not None:
        return []
    if any(allowed(caller) is not None for caller in statement.callers if caller in _STACK_ALLOWED):
        return []
    sql = statement.sql
    if statement.columns:  # COPY
        return _judge_copy(statement)
    tables = tables_of(sql)
    if not tables:
        return []
    parameter_sets = _parameter_sets(statement)
    values: set[Any] = set()
    pins = 0
    for number, literal in _EQUALS.findall(sql) + _ANY.findall(sql):
        values |= _bound(number or None, literal or None, parameter_sets)
        pins += 1
    for listed in _IN.findall(sql):
        for number, literal in re.findall(_PARAM, listed):
            values |= _bound(number or None, literal or None, parameter_sets)
        pins += 1
    for match in _INSERT.finditer(sql):
        table, columns, kind = match.groups()
        names = [name.strip().strip('"') for name in columns.split(",")]
        if "company_id" not in names:
            return [f"{_where(statement)}: INSERT INTO {table} without company_id: {_short(sql)}"]
        position = names.index("company_id")
        rest = sql[match.end() :]
        end = _INSERT_END.search(rest)
        body = rest[: end.start()] if end else rest
        rows = _groups(body) if kind.upper() == "VALUES" else [body]
        for row in rows:
            items = _split(row)
            if position < len(items):
                for number, literal in re.findall(_PARAM, items[position]):
                    values |= _bound(number or None, literal or None, parameter_sets)
        pins += 1
    problems = []
    for table, condition in _JOIN.findall(sql):
        if table in _COMPANY_TABLES and "company_id" not in condition:
            problems.append(f"{_where(statement)}: JOIN {table} without company_id in ON: {_short(sql)}")
    if pins == 0:
        problems.append(f"{_where(statement)}: no company_id condition on {sorted(tables)}: {_short(sql)}")
    elif len(values) != 1 or None in values:
        problems.append(
            f"{_where(statement)}: binds {len(values)} company ids {sorted(map(str, values))[:5]}: {_short(sql)}"
        )
    return problems


def _judge_copy(statement: Statement) -> list[str]:
    if "company_id" not in statement.columns:
        return [f"{_where(statement)}: COPY {statement.sql} without company_id"]
    position = statement.columns.index("company_id")
    companies = {record[position] for record in statement.parameters}
    if len(companies) > 1:
        return [f"{_where(statement)}: COPY {statement.sql} of {len(companies)} companies"]
    return []


def _groups(text: str) -> list[str]:
    """The insides of the top-level parenthesized groups of `text` (the rows of a VALUES list)."""
    groups, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "(":
            if depth == 0:
                start = index + 1
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                groups.append(text[start:index])
            elif depth < 0:
                break  # the end of an enclosing CTE
    return groups


def _split(items: str) -> list[str]:
    """Comma-separated items at the top level of parentheses."""
    parts, depth, current = [], 0, []
    for char in items:
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += char == "("
        depth -= char == ")"
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts]


def _where(statement: Statement) -> str:
    return statement.origin


def _short(sql: str) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= 300 else flat[:300] + " …"


def install(recorder: Recorder) -> None:
    """Record every PostgreSQL statement of this process into `recorder` (for the rest of the process)."""
    import asyncpg
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "before_cursor_execute")
    def _sqlalchemy(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if conn.dialect.name != "postgresql":
            return
        frames = _caller_frames()
        recorder.statements.append(Statement(statement, parameters, origin_of(*frames), (), callers_of(*frames)))

    def wrap(name: str) -> None:
        original = getattr(asyncpg.Connection, name)

        async def recorded(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            caller = sys._getframe(1)
            if "sqlalchemy" not in caller.f_code.co_filename:  # SQLAlchemy's own calls are recorded above
                if name == "executemany":
                    parameters: Any = list(args[0]) if args else []
                    recorder.statements.append(Statement(query, parameters, origin_of(caller), (), callers_of(caller)))
                elif name == "copy_records_to_table":
                    records = list(kwargs.get("records", ()))
                    kwargs["records"] = records
                    columns = tuple(kwargs.get("columns") or ())
                    recorder.statements.append(
                        Statement(query, records, origin_of(caller), columns, callers_of(caller))
                    )
                else:
                    recorder.statements.append(Statement(query, tuple(args), origin_of(caller), (), callers_of(caller)))
            return await original(self, query, *args, **kwargs)

        setattr(asyncpg.Connection, name, recorded)

    for name in ("fetch", "fetchrow", "fetchval", "execute", "executemany", "copy_records_to_table"):
        wrap(name)


def _caller_frames() -> list[Any]:
    """Where SQLAlchemy was called from: this greenlet's own stack (sync code run inside it, a migration),
    then the parent's, where the awaiting coroutines of the caller are."""
    import greenlet

    stacks = [sys._getframe(2)]
    parent = greenlet.getcurrent().parent
    if parent is not None and parent.gr_frame is not None:
        stacks.append(parent.gr_frame)
    return stacks
