"""The PII key set against the stored data: the start-up check and `wabapool pii rotate`.

`check_stored_keys` is what `serve` runs (through
`wabapool.cli.startup.startup_refusal`) before it takes any request: it
refuses a key set that lacks a key stored data needs (named by key id), so no
request meets a sealed value it cannot open. Then it records the keys this
process will write with. `wabapool worker` only opens sealed values (webhook
secrets), so it runs the refusal alone (`check_keys_to_read`). `rotate`
re-seals every value under the newest key and re-keys the phone and payload
hashes, page by page, resumable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.pii import PiiKeyError, PiiSealer
from wabapool.service.context import Clock, utc_now
from wabapool.service.models import DeductionRequest
from wabapool.storage.database import Database
from wabapool.storage.tables import deduction_requests, pii_keys_in_use, pii_rotations
from wabapool.storage.types import Record
from wabapool.storage.upsert import insert_for

log = structlog.get_logger("wabapool.pii")

SEAL = "seal"
HASH = "hash"
# Rows re-sealed per transaction: short transactions, a checkpoint after each.
ROTATE_PAGE_ROWS = 500


async def keys_in_use(connection: AsyncConnection) -> dict[str, set[str]]:
    rows = await connection.execute(select(pii_keys_in_use.c.purpose, pii_keys_in_use.c.key_id))
    found: dict[str, set[str]] = {SEAL: set(), HASH: set()}
    for row in rows:
        found.setdefault(row.purpose, set()).add(row.key_id)
    return found


def missing_keys(sealer: PiiSealer, in_use: dict[str, set[str]]) -> PiiKeyError | None:
    """Why this key set cannot serve the stored data (a sealing key it lacks), or None."""
    for key_id in sorted(in_use.get(SEAL, set())):
        if key_id not in sealer.key_ids:
            return PiiKeyError(
                f"stored personal data is sealed under PII key {key_id!r}, which WABAPOOL_PII_KEYS does not hold: "
                f"add {key_id!r} to the key set (then `wabapool pii rotate` to retire it)",
                key_id,
            )
    return None


def stale_hash_keys(sealer: PiiSealer, in_use: dict[str, set[str]]) -> set[str]:
    """Hash keys of stored rows other than this set's: the phone search tries them while listed; rotate re-keys."""
    return in_use.get(HASH, set()) - {sealer.hash_key_id}


async def record_keys(connection: AsyncConnection, sealer: PiiSealer, *, at: datetime) -> None:
    """Note the keys this process seals and hashes with, before it writes anything."""
    for purpose, key_id in ((SEAL, sealer.active_key_id), (HASH, sealer.hash_key_id)):
        statement = insert_for(connection, pii_keys_in_use).values(purpose=purpose, key_id=key_id, recorded_at=at)
        await connection.execute(statement.on_conflict_do_nothing())


async def _keys_needed(connection: AsyncConnection, sealer: PiiSealer) -> dict[str, set[str]]:
    """The keys the stored data is under; PiiKeyError (naming the key id) when this key set lacks one."""
    try:
        in_use = await keys_in_use(connection)
    except DBAPIError as exc:
        raise PiiKeyError("the PII key registry is missing: run `wabapool migrate` first") from exc
    error = missing_keys(sealer, in_use)
    if error is not None:
        raise error
    return in_use


async def check_keys_to_read(database: Database, sealer: PiiSealer) -> None:
    """Refuse a key set the stored data needs more than, and record nothing: for a process that only opens
    sealed values (the worker opens webhook secrets), so it stops at start, not at each event it delivers."""
    async with database.read() as connection:
        await _keys_needed(connection, sealer)


async def check_stored_keys(database: Database, sealer: PiiSealer, *, at: datetime) -> None:
    """Refuse (PiiKeyError naming the key id) a key set the stored data needs more than; then record ours."""
    async with database.transaction() as connection:
        in_use = await _keys_needed(connection, sealer)
        stale = stale_hash_keys(sealer, in_use)
        if stale:
            log.warning(
                "pii_hashes_under_older_keys",
                key_ids=sorted(stale),
                hint="run `wabapool pii rotate`; until then a phone search finds those rows while their key is listed",
            )
        # A hash key recorded by nobody yet is ours from now on; a seal key is added beside the others.
        await record_keys(connection, sealer, at=at)


# --- rotation ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RotationReport:
    seal_key_id: str
    hash_key_id: str
    rows_seen: int
    rows_changed: int
    resumed_after_id: int


_ROW_COLUMNS = (
    deduction_requests.c.id,
    deduction_requests.c.company_id,
    deduction_requests.c.unique_code,
    deduction_requests.c.billing_code,
    deduction_requests.c.deduction_code,
    deduction_requests.c.quantity,
    deduction_requests.c.waba_id,
    deduction_requests.c.broadcast_id,
    deduction_requests.c.message_id,
    deduction_requests.c.category,
    deduction_requests.c.customer_name_enc,
    deduction_requests.c.phone_number_enc,
    deduction_requests.c.phone_number_hash,
    deduction_requests.c.payload_hash,
)

_UPDATE_ROW = (
    update(deduction_requests)
    .where(deduction_requests.c.id == bindparam("row_id"))
    .values(
        customer_name_enc=bindparam("name_enc"),
        phone_number_enc=bindparam("phone_enc"),
        phone_number_hash=bindparam("phone_hash"),
        payload_hash=bindparam("payload"),
    )
)


def _resealed(sealer: PiiSealer, row: Record) -> dict[str, object] | None:
    """The row's new sealed values and hashes, or None when it already is as this key set writes it."""
    name = sealer.open(row.customer_name_enc)
    phone = sealer.open(row.phone_number_enc)
    request = DeductionRequest(
        company_id=row.company_id,
        billing_code=row.billing_code,
        deduction_code=row.deduction_code,
        unique_code=row.unique_code,
        quantity=row.quantity,
        waba_id=row.waba_id,
        broadcast_id=row.broadcast_id,
        message_id=row.message_id,
        category=row.category,
        customer_name=name,
        phone_number=phone,
    )
    values = {
        "row_id": row.id,
        "name_enc": sealer.seal(name) if sealer.needs_reseal(row.customer_name_enc) else row.customer_name_enc,
        "phone_enc": sealer.seal(phone) if sealer.needs_reseal(row.phone_number_enc) else row.phone_number_enc,
        "phone_hash": sealer.search_hash(phone),
        "payload": sealer.payload_hash(request.payload_bytes()),
    }
    unchanged = (
        values["name_enc"] is row.customer_name_enc
        and values["phone_enc"] is row.phone_number_enc
        and values["phone_hash"] == row.phone_number_hash
        and values["payload"] == row.payload_hash
    )
    return None if unchanged else values


async def _checkpoint(connection: AsyncConnection, sealer: PiiSealer, at: datetime) -> int:
    """Where a rotation to this key set stopped (0 for a new one, or after a finished one)."""
    key = (pii_rotations.c.seal_key_id == sealer.active_key_id) & (pii_rotations.c.hash_key_id == sealer.hash_key_id)
    row = (await connection.execute(select(pii_rotations).where(key))).first()
    if row is not None and row.finished_at is None:
        return int(row.last_id)
    await connection.execute(delete(pii_rotations).where(key))
    await connection.execute(
        pii_rotations.insert().values(
            seal_key_id=sealer.active_key_id, hash_key_id=sealer.hash_key_id, last_id=0, started_at=at
        )
    )
    return 0


async def rotate(
    database: Database,
    sealer: PiiSealer,
    *,
    clock: Clock = utc_now,
    page_rows: int = ROTATE_PAGE_ROWS,
    on_start: Callable[[int], None] = lambda total: None,
    on_page: Callable[[int], None] = lambda rows: None,
    stop_after_pages: int | None = None,
) -> RotationReport:
    """Re-seal every value under the newest key and re-key the hashes; each page commits with its checkpoint.

    A stopped run (crash, Ctrl-C, `stop_after_pages`) resumes after the last committed page. When the
    pass reaches the end, the registry keeps only this key set's keys: the older ones may then be removed.
    """
    async with database.transaction() as connection:
        await record_keys(connection, sealer, at=clock())  # rows sealed from now on may use the new key
        last_id = resumed = await _checkpoint(connection, sealer, clock())
        total = (
            await connection.execute(
                select(func.count()).select_from(deduction_requests).where(deduction_requests.c.id > last_id)
            )
        ).scalar_one()
    on_start(int(total))
    seen = changed = pages = 0
    while stop_after_pages is None or pages < stop_after_pages:
        async with database.transaction() as connection:
            rows = list(
                await connection.execute(
                    select(*_ROW_COLUMNS)
                    .where(deduction_requests.c.id > last_id)
                    .order_by(deduction_requests.c.id)
                    .limit(page_rows)
                )
            )
            if not rows:
                await _finish(connection, sealer, clock())
                return RotationReport(sealer.active_key_id, sealer.hash_key_id, seen, changed, resumed)
            updates = [values for values in (_resealed(sealer, row) for row in rows) if values is not None]
            if updates:
                await connection.execute(_UPDATE_ROW, updates)
            last_id = rows[-1].id
            await connection.execute(
                update(pii_rotations)
                .where(
                    (pii_rotations.c.seal_key_id == sealer.active_key_id)
                    & (pii_rotations.c.hash_key_id == sealer.hash_key_id)
                )
                .values(last_id=last_id)
            )
        seen += len(rows)
        changed += len(updates)
        pages += 1
        on_page(len(rows))
    return RotationReport(sealer.active_key_id, sealer.hash_key_id, seen, changed, resumed)


async def _finish(connection: AsyncConnection, sealer: PiiSealer, at: datetime) -> None:
    await connection.execute(
        update(pii_rotations)
        .where(
            (pii_rotations.c.seal_key_id == sealer.active_key_id) & (pii_rotations.c.hash_key_id == sealer.hash_key_id)
        )
        .values(finished_at=at)
    )
    await connection.execute(
        delete(pii_keys_in_use).where(
            ((pii_keys_in_use.c.purpose == SEAL) & (pii_keys_in_use.c.key_id != sealer.active_key_id))
            | ((pii_keys_in_use.c.purpose == HASH) & (pii_keys_in_use.c.key_id != sealer.hash_key_id))
        )
    )
