"""The schema: one definition for PostgreSQL and SQLite, keyed by company_id; every table, one import.

Every key of a company's table includes `company_id` (migration 0008, Citus's
rule for tables distributed by company; `storage/distribution.py` lists them):
primary keys are `(company_id, id)` with `id` drawn from the table's sequence.
On SQLite `id` stays the rowid primary key (the only column SQLite
auto-increments) and the migrations add `rowid_key_<table> (company_id, id)`
for the composite foreign keys to point at.

    base.py        the MetaData, the company key
    pools.py       companies, packages and buckets, WABAs, prices
    ledger.py      deduction requests, refunds, payments, ledger entries, spend per cycle
    spend_caps.py  WABA spending caps and their changes
    outbox.py      events waiting for delivery
    summaries.py   cycle statements, daily usage per WABA
    pii.py         PII keys in use, key rotations

Importing this package registers every table in `metadata` (in this order), so
`metadata` is the whole schema for Alembic, `create_all` and the tests.
"""

# The tables register in `metadata` in the order they are imported: the order of the schema's history.
# isort: off
from wabapool.storage.tables.base import metadata
from wabapool.storage.tables.pools import (
    billing_components,
    companies,
    organization_packages,
    price_list,
    price_list_versions,
    quota_buckets,
    waba_owners,
    whatsapp_packages,
)
from wabapool.storage.tables.ledger import deduction_requests, ledger_entries, payments, refunds, waba_cycle_spend
from wabapool.storage.tables.spend_caps import waba_spend_cap_changes, waba_spend_caps
from wabapool.storage.tables.outbox import outbox_events
from wabapool.storage.tables.summaries import cycle_statements, waba_daily_usage
from wabapool.storage.tables.pii import pii_keys_in_use, pii_rotations
# isort: on

__all__ = [
    "billing_components",
    "companies",
    "cycle_statements",
    "deduction_requests",
    "ledger_entries",
    "metadata",
    "organization_packages",
    "outbox_events",
    "payments",
    "pii_keys_in_use",
    "pii_rotations",
    "price_list",
    "price_list_versions",
    "quota_buckets",
    "refunds",
    "waba_cycle_spend",
    "waba_daily_usage",
    "waba_owners",
    "waba_spend_cap_changes",
    "waba_spend_caps",
    "whatsapp_packages",
]
