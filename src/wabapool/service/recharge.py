"""Auto-recharge requests left open: reported `top_up_request_expired` after 24 h (the worker's sweep).

Each package under its lock, in its own transaction, by the pure rule
(`operations.expire_top_up_request`): however many workers sweep, a request
expires once (the lock, and the outbox's dedup key on its reference).
"""

from __future__ import annotations

from datetime import datetime

from wabapool.domain import operations
from wabapool.domain.alerts import TOP_UP_REQUEST_OPEN_FOR
from wabapool.service.context import ServiceContext
from wabapool.service.pool_changes import pool_changes
from wabapool.storage import package_scans
from wabapool.storage import pools as pool_store
from wabapool.storage.changes import write_changes

# Requests one sweep expires; more wait for the next sweep (seconds later), oldest first.
SWEEP_MAX_REQUESTS = 1_000


async def expire_top_up_requests(context: ServiceContext, *, at: datetime) -> int:
    """Close every request open for 24 h or more with `top_up_request_expired`; returns how many."""
    async with context.database.read() as connection:
        due = await package_scans.expired_top_up_requests(
            connection, requested_by=at - TOP_UP_REQUEST_OPEN_FOR, limit=SWEEP_MAX_REQUESTS
        )
    expired = 0
    for company_id, package_id in due:
        async with context.database.transaction() as connection:
            pool = (await pool_store.load_packages(connection, company_id, [package_id], for_update=True)).get(
                package_id
            )
            if pool is None or pool.closed:
                continue
            caught_up = operations.catch_up(pool.state, at)
            change = operations.expire_top_up_request(caught_up.state, at)
            if not change.events:
                continue  # paid (or expired by another worker) since the list was read
            changes = pool_changes(pool, caught_up, change, reference="top_up_request_expired", at=at)
            written = await write_changes(connection, [changes], at=at)
        expired += 1
        await context.changed(pool.state.company_id, written)
    return expired
