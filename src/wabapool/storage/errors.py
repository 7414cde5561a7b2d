"""Storage errors: what a database failure means for the caller, translated once, here.

    StorageError
    ├── StorageUnavailable   the database could not be reached or dropped the connection before commit:
    │                        nothing was written, a retry is safe
    ├── StorageTimeout       a lock or a statement took longer than its limit (limits below): nothing written
    ├── UniqueConflict       a row's unique key is taken (e.g. a unique_code applied meanwhile): nothing
    │                        written by this statement; the transaction rolls back
    └── OutcomeUnknown       the commit itself failed or was interrupted (or a statement that commits on
                             its own, outside a transaction): the changes may or may not be stored; only
                             a retry with the same idempotency key can tell

The unit of work (`Database.transaction`) raises these and nothing from the
driver: a failure before the commit is one of the first three, a failure of
the commit is always OutcomeUnknown.
"""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# PostgreSQL SQLSTATEs: lock_not_available (lock_timeout) and query_canceled (statement_timeout);
# unique_violation; classes 08 "connection exception", 40 "transaction rollback", 53 "insufficient resources",
# 57 "operator intervention" (a server shutting down or starting up, a backend terminated by an administrator).
_TIMEOUT_STATES = {"55P03", "57014"}
_UNIQUE_VIOLATION = "23505"
# The connection is gone: asyncpg's InterfaceError ("connection is closed"), and InternalClientError (the
# connection found mid-way through an operation a drop left unfinished).
_DROPPED_CONNECTION = (OSError, ConnectionError, asyncpg.InterfaceError, asyncpg.InternalClientError)
# The connection is gone or unusable (a timeout mid-operation too) before anything was sent to commit.
_LOST_CONNECTION = (*_DROPPED_CONNECTION, asyncio.TimeoutError)


class StorageError(Exception):
    """A database failure, as the service needs to know it."""


class StorageUnavailable(StorageError):
    """The database is not reachable; nothing was written."""


class StorageTimeout(StorageError):
    """A lock wait or a statement passed its limit; nothing was written."""


class UniqueConflict(StorageError):
    """A unique key was already taken."""


class OutcomeUnknown(StorageError):
    """The commit failed or was interrupted: the writes may or may not have been stored."""


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, wrapped by SQLAlchemy or raw (statements run on asyncpg itself)."""
    for holder in _driver_errors(exc):
        state = getattr(holder, "sqlstate", None) or getattr(holder, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def _driver_errors(exc: BaseException) -> tuple[BaseException, ...]:
    """The error and what it wraps: SQLAlchemy's `orig`, or the asyncpg error its adapter re-raised (statements
    run on the asyncpg connection itself, `storage.pg`, meet the adapter's errors unwrapped)."""
    orig = getattr(exc, "orig", None)
    candidates = (exc, orig, exc.__cause__, getattr(orig, "__cause__", None))
    return tuple(error for error in candidates if isinstance(error, BaseException))


def lost_connection_unseen(exc: BaseException) -> bool:
    """Whether `exc` says the connection is gone and SQLAlchemy did not see it: raised by a statement sent on
    the driver itself (`storage.pg`), not through SQLAlchemy, whose own disconnect handling then never ran."""
    if isinstance(exc, DBAPIError):  # through SQLAlchemy: `handle_error` saw it (database._share_disconnects)
        return False
    state = _sqlstate(exc)
    if state is not None:  # the server said why: the connection failed, or the session was terminated
        return _session_ended(state)
    return any(isinstance(error, _DROPPED_CONNECTION) for error in _driver_errors(exc))


def refused_by_server(exc: BaseException) -> bool:
    """Whether the server answered the statement with an error of its own (a unique key taken, a timeout, a
    deadlock), so that a statement outside a transaction wrote nothing; not when the session ended (a
    terminated backend says so in an error too, possibly after its statement had committed)."""
    state = _sqlstate(exc)
    return state is not None and not _session_ended(state)


def _session_ended(state: str) -> bool:
    """A SQLSTATE of a failed connection (class 08) or an ended session (class 57 but the timeouts)."""
    return state[:2] == "08" or (state[:2] == "57" and state not in _TIMEOUT_STATES)


def translate(exc: BaseException) -> BaseException:
    """The storage error a driver failure before commit stands for; any other exception unchanged."""
    if isinstance(exc, (StorageError, asyncio.CancelledError)):
        return exc
    state = _sqlstate(exc)
    name = type(getattr(exc, "orig", None) or exc).__name__
    if isinstance(exc, PoolTimeout):  # no pool connection came within the pool's wait: nothing was sent
        return StorageTimeout(name)
    if isinstance(exc, IntegrityError) or state == _UNIQUE_VIOLATION:
        return UniqueConflict(name) if state in (None, _UNIQUE_VIOLATION) else exc
    if state in _TIMEOUT_STATES:
        return StorageTimeout(name)
    if state is not None and state[:2] in ("08", "40", "53", "57"):
        # A lost connection, a transaction the server rolled back (deadlock, serialization), a server
        # out of resources (too many connections), restarting or terminating the session (the fault
        # run's pg_terminate_backend and restarts): nothing was written, and a retry is safe.
        return StorageUnavailable(name)
    if any(isinstance(error, _LOST_CONNECTION) for error in _driver_errors(exc)):
        return StorageUnavailable(name)
    if isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))
    ):
        return StorageUnavailable(name)
    return exc
