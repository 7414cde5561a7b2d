"""Operator errors: what went wrong outside the program, said in one line with what to do, never a traceback.

Every verb runs inside `OperatorErrors` (the Typer group class of `wabapool`): a failure whose cause is
the operator's setup (no schema, a database or Redis that cannot be reached, a malformed URL, a number
out of range) is printed as one line on stderr and the command exits 1. Anything else is a bug and keeps
its traceback. The URL is shown without its password.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Iterator

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

# A company id is a PostgreSQL BIGINT.
COMPANY_ID_MAX = 2**63 - 1
# PostgreSQL SQLSTATEs: undefined_table, invalid_catalog_name (no such database), numeric_value_out_of_range,
# invalid_password / invalid_authorization_specification.
_NO_TABLE, _NO_DATABASE, _OUT_OF_RANGE, _AUTHENTICATION = "42P01", "3D000", "22003", ("28P01", "28000")
errors_console = Console(stderr=True, soft_wrap=True)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and every cause or context behind it (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and id(orig) not in seen:
            yield from _chain(orig)
        current = current.__cause__ or current.__context__


def _sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return state if isinstance(state, str) else None


def _where(variable: str) -> str:
    """The URL in `variable` without its password, for the message."""
    from sqlalchemy.engine import make_url

    raw = os.environ.get(variable, "")
    try:
        return make_url(raw).render_as_string(hide_password=True) if raw else "the default"
    except Exception:  # noqa: BLE001 - a URL that does not parse is said as such elsewhere
        return variable


def _malformed(variable: str) -> bool:
    """Whether the URL in `variable` is set and does not parse."""
    from sqlalchemy.engine import make_url

    raw = os.environ.get(variable)
    if not raw:
        return False
    try:
        make_url(raw)
    except Exception:  # noqa: BLE001 - any failure to parse is a malformed URL
        return True
    return False


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says only that the database cannot be reached now (a retry may succeed).

    A database that did not answer (starting up, shutting down, a dropped session) is such a moment too: a
    worker restarted while PostgreSQL restarts must wait for it, not exit (the fault run found one that did).
    """
    message = operator_message(exc)
    if message is None or "Redis" in message:
        return False
    return "cannot be reached" in message or "did not answer" in message


def operator_message(exc: BaseException) -> str | None:
    """One line saying what went wrong and what to do, or None when `exc` is not an operator's error."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    chain = list(_chain(exc))
    states = {_sqlstate(link) for link in chain}
    texts = " ".join(str(link) for link in chain).lower()
    database = f"the database ({_where('WABAPOOL_DATABASE_URL')})"
    if _NO_TABLE in states or "no such table" in texts:
        return f"{database} has no wabapool schema: run `wabapool migrate` first"
    if _NO_DATABASE in states:
        return f"{database} does not exist: create it, then run `wabapool migrate`"
    if states & set(_AUTHENTICATION):
        return f"{database} refused the credentials: fix the user or password in WABAPOOL_DATABASE_URL"
    malformed = any(isinstance(link, ValueError) for link in chain) and (
        "database url" in texts or _malformed("WABAPOOL_DATABASE_URL")
    )
    if malformed or any(isinstance(link, (ArgumentError, NoSuchModuleError)) for link in chain):
        return "WABAPOOL_DATABASE_URL is not a database URL: use postgresql://USER@HOST:PORT/NAME or sqlite:///FILE"
    out_of_range = "out of range" in texts or "out of int64 range" in texts
    if _OUT_OF_RANGE in states or out_of_range or any(isinstance(link, OverflowError) for link in chain):
        return f"a number is out of range: company ids are 1 to {COMPANY_ID_MAX}"
    if any(isinstance(link, (RedisConnectionError, RedisTimeoutError)) for link in chain):
        return f"Redis ({_where('WABAPOOL_REDIS_URL')}) cannot be reached: start it or fix WABAPOOL_REDIS_URL"
    if any(isinstance(link, (OSError, socket.gaierror, sqlite3.OperationalError, TimeoutError)) for link in chain):
        return f"{database} cannot be reached: start it or fix WABAPOOL_DATABASE_URL"
    from wabapool.service.errors import storage_failed

    if any(storage_failed(link) for link in chain):
        return f"{database} did not answer: check that it is up, then run the command again"
    return None


class OperatorErrors(TyperGroup):
    """The `wabapool` group: an operator's error ends the command with one line, a bug with its traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:
            message = operator_message(exc)
            if message is None:
                raise
            errors_console.print(f"[red]error:[/] {escape(message)}")
            raise typer.Exit(1) from None
