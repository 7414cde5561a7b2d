"""The settings both clients build their httpx client from, checked once."""

from __future__ import annotations

from typing import TypedDict

import httpx

# A deduction sits on the message-sending path: one attempt never waits longer than this.
TIMEOUT_MAX_SECONDS = 60.0
USER_AGENT = "wabapool-client/0.1"


class HttpSettings(TypedDict):
    base_url: str
    headers: dict[str, str]
    timeout: httpx.Timeout
    follow_redirects: bool


def http_settings(base_url: str, api_key: str, timeout_seconds: float) -> HttpSettings:
    """Keyword arguments for httpx.Client / httpx.AsyncClient."""
    if not isinstance(api_key, str) or not api_key:
        raise ValueError("api_key must be a non-empty string")
    if isinstance(timeout_seconds, bool) or not 0 < timeout_seconds <= TIMEOUT_MAX_SECONDS:
        raise ValueError(f"timeout_seconds must be above 0 and at most {TIMEOUT_MAX_SECONDS}")
    return {
        "base_url": base_url,
        "headers": {"X-Api-Key": api_key, "Accept": "application/json", "User-Agent": USER_AGENT},
        "timeout": httpx.Timeout(timeout_seconds),
        "follow_redirects": False,
    }
