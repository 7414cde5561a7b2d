"""Waiting on a condition, never on the clock: poll until it holds, or fail saying what never happened.

The deadline bounds a failure, it never decides a pass: a test that needs it to pass is a test that is wrong.
The poll interval is how often the condition is looked at, not a guess at how long something takes.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# How long a test waits for a state it brought about before it calls it a failure (a loaded 2-core machine).
WAIT_SECONDS = 30.0
POLL_SECONDS = 0.01


def until(
    condition: Callable[[], T], *, what: str, within_seconds: float = WAIT_SECONDS, poll_seconds: float = POLL_SECONDS
) -> T:
    """Call `condition` until it returns something truthy, and return that; past the deadline, fail naming `what`."""
    deadline = time.monotonic() + within_seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {within_seconds} s for {what}; it never happened (last seen: {value!r})")
        time.sleep(poll_seconds)


async def eventually(
    condition: Callable[[], T | Awaitable[T]],
    *,
    what: str,
    within_seconds: float = WAIT_SECONDS,
    poll_seconds: float = POLL_SECONDS,
) -> T:
    """`until` on the event loop: `condition` may be a plain or an async callable; the loop runs between polls."""
    deadline = time.monotonic() + within_seconds
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {within_seconds} s for {what}; it never happened (last seen: {value!r})")
        await asyncio.sleep(poll_seconds)
