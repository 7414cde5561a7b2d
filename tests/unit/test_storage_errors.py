"""What a driver failure means for the caller: the fault run's restarts and terminations are 503s, never 500s."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError

from wabapool.storage.errors import (
    StorageTimeout,
    StorageUnavailable,
    UniqueConflict,
    lost_connection_unseen,
    translate,
)


def _wrapped(orig: Exception) -> DBAPIError:
    """The driver error as SQLAlchemy hands it up (a generic DBAPIError, the asyncpg error as `orig`)."""
    return DBAPIError("statement", None, orig)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is not yet accepting connections"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.CrashShutdownError("terminating connection because of crash of another server process"),
    ],
)
def test_a_server_restarting_or_terminating_the_session_is_unavailable(error: Exception) -> None:
    assert isinstance(translate(error), StorageUnavailable)
    assert isinstance(translate(_wrapped(error)), StorageUnavailable)


def test_a_connection_left_mid_operation_by_a_drop_is_unavailable() -> None:
    error = asyncpg.InternalClientError("cannot switch to state 21; another operation (2) is in progress")
    assert isinstance(translate(error), StorageUnavailable)
    # As SQLAlchemy's asyncpg adapter re-raises it (not a DBAPIError: the fault run saw it reach the endpoint).
    try:
        raise AsyncAdapt_asyncpg_dbapi.InternalClientError(str(error)) from error
    except Exception as adapted:
        assert isinstance(translate(adapted), StorageUnavailable)
        assert isinstance(translate(_wrapped(adapted)), StorageUnavailable)  # and as SQLAlchemy's DBAPIError


def test_a_closed_connection_met_through_the_adapter_is_unavailable() -> None:
    """`storage.pg` runs statements on the asyncpg connection: SQLAlchemy's adapter re-raises, unwrapped."""
    try:
        raise AsyncAdapt_asyncpg_dbapi.InterfaceError("connection is closed") from asyncpg.InterfaceError("closed")
    except Exception as adapted:
        assert isinstance(translate(adapted), StorageUnavailable)
    try:
        raise AsyncAdapt_asyncpg_dbapi.Error("terminating") from asyncpg.exceptions.AdminShutdownError("terminating")
    except Exception as adapted:
        assert isinstance(translate(adapted), StorageUnavailable)


def test_timeouts_and_unique_violations_keep_their_meaning() -> None:
    assert isinstance(translate(asyncpg.exceptions.QueryCanceledError("statement timeout")), StorageTimeout)
    assert isinstance(translate(asyncpg.exceptions.LockNotAvailableError("lock timeout")), StorageTimeout)
    assert isinstance(translate(asyncpg.exceptions.UniqueViolationError("duplicate key")), UniqueConflict)


def test_a_programming_error_is_left_as_it_is() -> None:
    error = asyncpg.exceptions.UndefinedColumnError("column does not exist")
    assert translate(error) is error


def test_a_lost_connection_met_on_the_driver_is_told_apart_from_one_sqlalchemy_saw() -> None:
    """Only a drop SQLAlchemy did not see needs the pools dropped by hand (`Database._drop_lost_connections`)."""
    for cause in (asyncpg.InterfaceError("connection is closed"), asyncpg.exceptions.AdminShutdownError("bye")):
        try:
            raise AsyncAdapt_asyncpg_dbapi.InterfaceError("connection is closed") from cause
        except Exception as adapted:
            assert lost_connection_unseen(adapted)
            assert not lost_connection_unseen(_wrapped(adapted))  # SQLAlchemy's handle_error ran
    assert lost_connection_unseen(asyncpg.exceptions.ConnectionDoesNotExistError("gone"))
    # A timeout, a deadlock, a unique violation or a programming error leave the connection sound.
    for sound in (
        asyncpg.exceptions.QueryCanceledError("statement timeout"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.UndefinedColumnError("column does not exist"),
        ValueError("not a driver error"),
    ):
        assert not lost_connection_unseen(sound)
