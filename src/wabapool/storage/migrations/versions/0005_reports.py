"""Reports: the daily usage roll-up, indexes for phone search and refund rows, the PII key registry.

- `waba_daily_usage`: spend and messages per WABA per day (company timezone),
  back-filled from the deductions and refunds already stored (each refund is
  taken back on its own day, as the service does from now on).
- `ix_deduction_requests_company_phone`, `ix_refunds_company_created`: the
  phone search and the refund rows of `mcc_logs` read an index, newest first.
- `pii_keys_in_use`: the key ids that stored values are sealed under, found
  by reading every sealed value once here; start-up refuses a key set that
  lacks one of them. `pii_rotations`: where `wabapool pii rotate` got to.

Rolling back drops the new tables and indexes; no stored value changes.

Revision ID: 0005
Revises: 0002
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL_BATCH = 10_000


def upgrade() -> None:
    op.create_table(
        "waba_daily_usage",
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("waba_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("spent_minor", sa.BigInteger(), nullable=False),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("company_id", "waba_id", "day", name=op.f("pk_waba_daily_usage")),
    )
    op.create_table(
        "pii_keys_in_use",
        sa.Column("purpose", sa.String(length=8), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("purpose", "key_id", name=op.f("pk_pii_keys_in_use")),
    )
    op.create_table(
        "pii_rotations",
        sa.Column("seal_key_id", sa.String(length=64), nullable=False),
        sa.Column("hash_key_id", sa.String(length=64), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seal_key_id", "hash_key_id", name=op.f("pk_pii_rotations")),
    )
    with op.batch_alter_table("deduction_requests") as batch_op:
        batch_op.create_index(
            "ix_deduction_requests_company_phone", ["company_id", "phone_number_hash", "created_at", "id"]
        )
    with op.batch_alter_table("refunds") as batch_op:
        batch_op.create_index("ix_refunds_company_created", ["company_id", "created_at", "id"])
    _backfill_usage(op.get_bind())
    _record_sealing_keys(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("refunds") as batch_op:
        batch_op.drop_index("ix_refunds_company_created")
    with op.batch_alter_table("deduction_requests") as batch_op:
        batch_op.drop_index("ix_deduction_requests_company_phone")
    op.drop_table("pii_rotations")
    op.drop_table("pii_keys_in_use")
    op.drop_table("waba_daily_usage")


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _backfill_usage(connection: sa.engine.Connection) -> None:
    """Sum what is stored, day by day in each company's timezone (a migration keeps its own copy of the rule)."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text(_BACKFILL_PG))
        return
    zones = {row.company_id: ZoneInfo(row.timezone) for row in connection.execute(sa.text(_COMPANIES))}
    totals: dict[tuple[int, str, object], list[int]] = defaultdict(lambda: [0, 0])
    for query, sign in ((_DEDUCTIONS, 1), (_REFUNDS, -1)):
        for row in connection.execute(sa.text(query).columns(created_at=sa.DateTime())):
            zone = zones.get(row.company_id)
            if zone is None:
                continue
            day = _aware(row.created_at).astimezone(zone).date()
            figures = totals[(row.company_id, row.waba_id, day)]
            figures[0] += sign * row.amount_minor
            figures[1] += sign * row.quantity
    table = sa.table(
        "waba_daily_usage",
        sa.column("company_id"),
        sa.column("waba_id"),
        sa.column("day", sa.Date()),
        sa.column("spent_minor"),
        sa.column("messages"),
    )
    rows = [
        {"company_id": key[0], "waba_id": key[1], "day": key[2], "spent_minor": value[0], "messages": value[1]}
        for key, value in totals.items()
    ]
    for start in range(0, len(rows), _BACKFILL_BATCH):
        connection.execute(table.insert(), rows[start : start + _BACKFILL_BATCH])


def _record_sealing_keys(connection: sa.engine.Connection) -> None:
    """Every key id a stored value is sealed under (`kid.` + nonce + ciphertext)."""
    if connection.dialect.name == "postgresql":
        key_ids = {row[0].decode("utf-8", "replace") for row in connection.execute(sa.text(_KEY_IDS_PG))}
    else:
        key_ids = set()
        query = "SELECT customer_name_enc, phone_number_enc FROM deduction_requests"
        for row in connection.execute(sa.text(query)):
            for sealed in row:
                if sealed is not None:
                    key_ids.add(bytes(sealed).partition(b".")[0].decode("utf-8", "replace"))
    table = sa.table(
        "pii_keys_in_use", sa.column("purpose"), sa.column("key_id"), sa.column("recorded_at", sa.DateTime())
    )
    now = datetime.now(UTC)
    if connection.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # stored as naive UTC there, as everywhere else on SQLite
    if key_ids:
        connection.execute(
            table.insert(), [{"purpose": "seal", "key_id": kid, "recorded_at": now} for kid in sorted(key_ids)]
        )


_BACKFILL_PG = """
INSERT INTO waba_daily_usage (company_id, waba_id, day, spent_minor, messages)
SELECT company_id, waba_id, day, sum(amount), sum(messages) FROM (
    SELECT d.company_id, d.waba_id, (d.created_at AT TIME ZONE c.timezone)::date AS day,
           d.amount_minor AS amount, d.quantity AS messages
    FROM deduction_requests d JOIN companies c ON c.company_id = d.company_id
    UNION ALL
    SELECT r.company_id, d.waba_id, (r.created_at AT TIME ZONE c.timezone)::date,
           -d.amount_minor, -d.quantity
    FROM refunds r JOIN deduction_requests d ON d.id = r.deduction_request_id
    JOIN companies c ON c.company_id = r.company_id
) AS usage
GROUP BY company_id, waba_id, day
"""
_KEY_IDS_PG = """
SELECT DISTINCT substring(sealed FROM 1 FOR position('\\x2e'::bytea IN sealed) - 1) FROM (
    SELECT customer_name_enc AS sealed FROM deduction_requests WHERE customer_name_enc IS NOT NULL
    UNION ALL
    SELECT phone_number_enc FROM deduction_requests WHERE phone_number_enc IS NOT NULL
) AS values_sealed
"""
_COMPANIES = "SELECT company_id, timezone FROM companies"
_DEDUCTIONS = "SELECT company_id, waba_id, created_at, amount_minor, quantity FROM deduction_requests"
_REFUNDS = (
    "SELECT r.company_id, d.waba_id, r.created_at, d.amount_minor, d.quantity "
    "FROM refunds r JOIN deduction_requests d ON d.id = r.deduction_request_id"
)
