"""The ledger write of a group in one PostgreSQL statement: `write_changes`' `statement` strategy.

A deduction's write was five round trips (COPY of the requests, COPY of the
entries, the buckets, then spend + usage + version bump), which made a lone
deduction on an idle pool dearer than the simplest row-lock design. Here the
rows go as arrays side by side (one per column) and every table is written by
a data-modifying CTE of the one statement that ends, as before, with the
version bump and its read-back (`versions.bump_with_spend_pg`):

    WITH requests_added AS (INSERT INTO deduction_requests … SELECT unnest($1), unnest($2), …),
         entries_added  AS (INSERT INTO ledger_entries … SELECT unnest(…), …),
         buckets_set    AS (UPDATE quota_buckets … FROM (SELECT unnest(…) …) AS bucket_values …),
         spent_now      AS (INSERT INTO waba_cycle_spend … ON CONFLICT … DO UPDATE … RETURNING …),
         usage_added    AS (INSERT INTO waba_daily_usage … ON CONFLICT … DO UPDATE …),
         events         AS (INSERT INTO outbox_events … ON CONFLICT DO NOTHING),  -- only with events
         bumped         AS (UPDATE organization_packages SET version = version + 1,
                                   <the moved pools' state columns> … RETURNING …)
    SELECT … FROM bumped LEFT JOIN whatsapp_packages …

Every CTE runs exactly once and to completion whether or not the query reads
it; all of them see the snapshot the statement started with, and none
touches a row another one touches (the pool's own row only by the bump, which
writes a moved state with the version: `versions._moved_state`). Foreign keys of
the entries to their requests are checked at the end of the statement. A
unique_code already taken fails the whole statement (UniqueConflict).

On Citus the arrays hide the company from the planner, so the statement is
planned on the coordinator: each CTE goes to the company's shard as a step of
its own (one round trip each, as the five statements were), still one
transaction on one shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, BigInteger, String, Table, Text, bindparam, cast, func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import CTE, Select

from wabapool.storage import pg
from wabapool.storage.tables import deduction_requests, ledger_entries, outbox_events, quota_buckets


def _unnest_insert(
    table: Table, columns: Sequence[str], name: str, only_if: ColumnElement[bool] | None, *, skip_taken: bool = False
) -> CTE:
    """INSERT INTO table (columns) SELECT unnest($…) side by side: one array parameter per column, named
    `<name>_<column>`; a JSON column's array is of text, cast back. Nothing when `only_if` is false. With
    `skip_taken`, a row a unique key already holds is dropped (ON CONFLICT DO NOTHING), not an error."""
    selected: list[ColumnElement[Any]] = []
    for column in columns:
        column_type = table.c[column].type
        if isinstance(column_type, JSON):
            selected.append(cast(func.unnest(bindparam(f"{name}_{column}", type_=ARRAY(Text))), column_type))
        else:
            selected.append(func.unnest(bindparam(f"{name}_{column}", type_=ARRAY(column_type))))
    rows = select(*selected) if only_if is None else select(*selected).where(only_if)
    insert = postgresql.insert(table).from_select(list(columns), rows)
    return (insert.on_conflict_do_nothing() if skip_taken else insert).cte(name)


def _buckets_set(only_if: ColumnElement[bool] | None) -> CTE:
    """UPDATE quota_buckets from arrays of (company, component, quota type, balance, limit, used)."""
    values = select(
        func.unnest(bindparam("bucket_company_ids", type_=ARRAY(BigInteger))).label("company_id"),
        func.unnest(bindparam("bucket_component_ids", type_=ARRAY(BigInteger))).label("component_id"),
        func.unnest(bindparam("bucket_types", type_=ARRAY(String))).label("quota_type"),
        func.unnest(bindparam("bucket_balances", type_=ARRAY(BigInteger))).label("balance"),
        func.unnest(bindparam("bucket_limits", type_=ARRAY(BigInteger))).label("limit"),
        func.unnest(bindparam("bucket_used", type_=ARRAY(BigInteger))).label("used"),
    ).subquery("bucket_values")
    matched = (
        (quota_buckets.c.company_id == values.c.company_id)
        & (quota_buckets.c.billing_component_id == values.c.component_id)
        & (quota_buckets.c.quota_type == values.c.quota_type)
    )
    return (
        update(quota_buckets)
        .where(matched if only_if is None else matched & only_if)
        .values(balance_minor=values.c.balance, limit_minor=values.c.limit, used_minor=values.c.used)
        .cte("buckets_set")
    )


def compile_one_write(
    bump_with_spend: Select[tuple[object, ...]],
    deduction_columns: Sequence[str],
    ledger_columns: Sequence[str],
    *,
    only_if: ColumnElement[bool] | None = None,
    outbox_columns: Sequence[str] = (),
) -> pg.Compiled:
    """The whole write: `bump_with_spend` (the spend, usage and version statement) with the rows' CTEs added.

    `only_if` guards the rows' CTEs (a write without the pool's lock: they write only once the guarded
    version bump, which `bump_with_spend` guards alike, has found the pool unmoved; `changes.write_if_unmoved`).
    With `outbox_columns` the events go in too (`events_…` arrays; a repeated dedup key dropped, as
    `ledger.emit_events` drops it). Only a write that has events may use that one: the outbox's NOTIFY
    trigger runs per INSERT statement, rows or none, and would wake the worker on every group.
    """
    added = [
        _unnest_insert(deduction_requests, deduction_columns, "requests", only_if),
        _unnest_insert(ledger_entries, ledger_columns, "entries", only_if),
        _buckets_set(only_if),
    ]
    if outbox_columns:
        added.append(_unnest_insert(outbox_events, outbox_columns, "events", only_if, skip_taken=True))
    return pg.compile_statement(bump_with_spend.add_cte(*added))


def column_arrays(name: str, columns: Sequence[str], records: Sequence[Sequence[object]]) -> dict[str, list[object]]:
    """Rows as one array per column, named as `_unnest_insert` named its parameters."""
    if not records:
        return {f"{name}_{column}": [] for column in columns}
    return {
        f"{name}_{column}": list(values) for column, values in zip(columns, zip(*records, strict=True), strict=True)
    }


def bucket_arrays(values: Sequence[tuple[int, int, str, int, int, int]]) -> dict[str, list[object]]:
    """(company, component, quota type, balance, limit, used) rows as `_buckets_set`'s arrays."""
    names = ("bucket_company_ids", "bucket_component_ids", "bucket_types", "bucket_balances", "bucket_limits")
    columns: list[list[object]] = [list(column) for column in zip(*values, strict=True)] if values else [[]] * 6
    return {**dict(zip(names, columns[:5], strict=True)), "bucket_used": columns[5]}
