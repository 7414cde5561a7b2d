"""How each table is placed on a Citus cluster: the one list the schema test, the router test and the docs use.

- Distributed by `company_id`, all co-located: a company's rows of every one of
  these tables sit on one shard, so a request that names one company is one
  shard's transaction (a "router" query), joins between them included.
  Citus's rule, checked by `tests/integration/test_distribution_schema.py`:
  every primary key, unique key and foreign key includes `company_id`.
- Distributed by another column, not co-located: `waba_owners` by `waba_id`
  (Meta's WABA id is global: who owns it is one row found by the id alone).
- Reference tables: small, shared by every company, copied to every node (the
  default price list with the companies' overrides, the PII key bookkeeping).
- Local to the coordinator: Alembic's own bookkeeping.

A new table must be added here (the schema test fails on a table in no list).
"""

from __future__ import annotations

from typing import Final

DISTRIBUTION_COLUMN: Final = "company_id"

# Distributed by company_id and co-located with `companies` (the first is the co-location group's anchor).
COMPANY_TABLES: Final[tuple[str, ...]] = (
    "companies",
    "organization_packages",
    "billing_components",
    "quota_buckets",
    "whatsapp_packages",
    "deduction_requests",
    "refunds",
    "payments",
    "ledger_entries",
    "waba_cycle_spend",
    "waba_daily_usage",
    "outbox_events",
    "cycle_statements",
    "waba_spend_caps",
    "waba_spend_cap_changes",
)

# Distributed by a column of their own: table -> distribution column.
OTHER_DISTRIBUTED_TABLES: Final[dict[str, str]] = {"waba_owners": "waba_id"}

REFERENCE_TABLES: Final[tuple[str, ...]] = (
    "price_list",
    "price_list_versions",
    "pii_keys_in_use",
    "pii_rotations",
)

LOCAL_TABLES: Final[tuple[str, ...]] = ("alembic_version",)


def placement(table: str) -> str | None:
    """'company', 'distributed', 'reference' or 'local'; None for a table in no list."""
    if table in COMPANY_TABLES:
        return "company"
    if table in OTHER_DISTRIBUTED_TABLES:
        return "distributed"
    if table in REFERENCE_TABLES:
        return "reference"
    if table in LOCAL_TABLES:
        return "local"
    return None


def citus_calls() -> list[str]:
    """The SQL that turns a migrated database into a Citus cluster's tables (docs/scale-out.md shows it)."""
    anchor, *rest = COMPANY_TABLES
    calls = [f"SELECT create_distributed_table('{anchor}', '{DISTRIBUTION_COLUMN}');"]
    calls += [
        f"SELECT create_distributed_table('{table}', '{DISTRIBUTION_COLUMN}', colocate_with => '{anchor}');"
        for table in rest
    ]
    calls += [
        f"SELECT create_distributed_table('{table}', '{column}', colocate_with => 'none');"
        for table, column in OTHER_DISTRIBUTED_TABLES.items()
    ]
    calls += [f"SELECT create_reference_table('{table}');" for table in REFERENCE_TABLES]
    return calls
