"""Service-to-service API keys (`WABAPOOL_API_KEYS`), stored hashed, compared in constant time, with scopes.

An entry is `service:key` (every scope) or `service:key:scope+scope`; the
scopes are what a calling service may do on the internal API: `deduct`,
`refund`, `top-up`, `settle`, `provision`, `read`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

# A service key is a random secret, not a password; shorter ones are guessable.
API_KEY_MIN_LENGTH = 16


class Scope(StrEnum):
    DEDUCT = "deduct"
    REFUND = "refund"
    TOP_UP = "top-up"
    SETTLE = "settle"
    PROVISION = "provision"
    READ = "read"


ALL_SCOPES = frozenset(Scope)


@dataclass(frozen=True, slots=True)
class Caller:
    """A calling service as its key names it, and what that key may do."""

    service: str
    scopes: frozenset[Scope] = ALL_SCOPES

    def may(self, scope: Scope) -> bool:
        return scope in self.scopes


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


_SCOPE_NAMES = frozenset(scope.value for scope in Scope)
_SCOPE_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz-+")


def _key_and_scopes(rest: str, position: int, service: str) -> tuple[str, frozenset[Scope]]:
    """Split `key[:scope+scope]`. A key may hold colons: the last part is scopes only if it reads as scopes."""
    key, separator, tail = rest.rpartition(":")
    if not separator or not tail or not set(tail) <= _SCOPE_CHARACTERS:
        return rest, ALL_SCOPES
    names = tail.split("+")
    unknown = [name for name in names if name not in _SCOPE_NAMES]
    if unknown and len(unknown) < len(names):
        known = ", ".join(sorted(_SCOPE_NAMES))
        raise ValueError(f"API key entry {position} ({service}) has an unknown scope; known: {known}")
    if unknown:  # nothing in it is a scope: the colon is part of the key
        return rest, ALL_SCOPES
    return key, frozenset(Scope(name) for name in names)


class ApiKeyRing:
    """The calling services and the SHA-256 of each one's key; the keys themselves are not kept."""

    def __init__(self, entries: list[tuple[Caller, bytes]]) -> None:
        self._entries = tuple(entries)

    @classmethod
    def from_spec(cls, spec: str) -> ApiKeyRing:
        """Parse `service:key[:scope+scope],…` (a service may list several keys)."""
        entries: list[tuple[Caller, bytes]] = []
        for position, part in enumerate(filter(None, (p.strip() for p in spec.split(","))), start=1):
            service, separator, rest = part.partition(":")
            service = service.strip()
            key, scopes = _key_and_scopes(rest.strip(), position, service)
            key = key.strip()
            # Name the entry by position: the text may hold a key and must not reach a log.
            if not separator or not service or not key:
                raise ValueError(f"API key entry {position} is not service:key")
            if len(key) < API_KEY_MIN_LENGTH:
                raise ValueError(
                    f"API key entry {position} ({service}) is shorter than {API_KEY_MIN_LENGTH} characters"
                )
            digest = _digest(key)
            if any(hmac.compare_digest(digest, known) for _, known in entries):
                raise ValueError(f"API key entry {position} ({service}) repeats a key already listed")
            entries.append((Caller(service, scopes), digest))
        return cls(entries)

    @property
    def services(self) -> tuple[str, ...]:
        """The service names, in the order they were configured (a name appears once)."""
        return tuple(dict.fromkeys(caller.service for caller, _ in self._entries))

    def caller(self, presented: str | None) -> Caller | None:
        """The calling service with its scopes, or None; every entry is compared, so timing reveals nothing."""
        if not presented:
            return None
        digest = _digest(presented)
        matched: Caller | None = None
        for caller, known in self._entries:
            if hmac.compare_digest(digest, known) and matched is None:
                matched = caller
        return matched

    def authenticate(self, presented: str | None) -> str | None:
        """The calling service's name, or None."""
        caller = self.caller(presented)
        return None if caller is None else caller.service

    def __repr__(self) -> str:
        return f"ApiKeyRing(services={list(self.services)!r})"
