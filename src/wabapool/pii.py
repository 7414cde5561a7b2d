"""Personal data at rest: AES-GCM with a key set, and keyed hashes for exact-match search and replays.

`WABAPOOL_PII_KEYS` is `kid:base64key,…` (32-byte keys). The last key seals;
every listed key opens, so keys rotate by appending one and running
`wabapool pii rotate`. The first key keys the hashes (the phone search hash,
the request's payload hash and the page cursors' tag), so they stay put
across rotations: keep it listed. The built-in development key (`dev`) only
ever reads once any other key is listed: data a demo sealed with it stays
readable while `pii rotate` re-seals it, and nothing new is sealed with it.

    PiiKeyError   the key set is malformed, or a value is sealed under a key it lacks (names the key id)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import threading
import weakref
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
_NON_DIGITS = re.compile(r"\D")
DEVELOPMENT_KEY_ID = "dev"
_DEVELOPMENT_KEY = hashlib.sha256(b"wabapool development pii key").digest()
# Embedded/demo mode only: a fixed, public key so a demo database stays readable across restarts.
DEVELOPMENT_KEYS = f"{DEVELOPMENT_KEY_ID}:" + base64.b64encode(_DEVELOPMENT_KEY).decode()
KEY_ID_MAX_LENGTH = 64
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class PiiKeyError(ValueError):
    """A key problem; the message names key ids, never key material."""

    def __init__(self, message: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


def normalize_phone(value: str) -> str | None:
    """E.164-style `+digits`: spaces, dashes, dots and brackets dropped, a `00` prefix read as `+`."""
    digits = _NON_DIGITS.sub("", value)
    if not digits:
        return None
    if not value.strip().startswith("+") and digits.startswith("00"):
        digits = digits[2:]
    return "+" + digits if digits else None


def key_id_of(sealed: bytes) -> str:
    """The id of the key a sealed value needs."""
    return bytes(sealed).partition(b".")[0].decode("utf-8", "replace")


def parse_keys(keys_spec: str) -> list[tuple[str, bytes]]:
    """`kid:base64,…` in order; PiiKeyError names the entry by position (the text holds keys)."""
    keys: list[tuple[str, bytes]] = []
    for position, part in enumerate(filter(None, (p.strip() for p in keys_spec.split(","))), start=1):
        kid, _, encoded = part.partition(":")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError as exc:
            raise PiiKeyError(f"PII key entry {position} is not kid:base64 of 32 bytes") from exc
        if not _KEY_ID.fullmatch(kid) or len(key) != 32:
            raise PiiKeyError(f"PII key entry {position} is not kid:base64 of 32 bytes (kid: letters, digits, _ -)")
        if kid in dict(keys):
            raise PiiKeyError(f"PII key id {kid!r} is listed twice", kid)
        if kid == DEVELOPMENT_KEY_ID and key != _DEVELOPMENT_KEY:
            raise PiiKeyError(f"PII key id {kid!r} is reserved for the built-in development key", kid)
        keys.append((kid, key))
    if not keys:
        raise PiiKeyError("at least one PII key is needed")
    return keys


class _Nonces:
    """Random 96-bit nonces, read from the OS a few hundred at a time.

    Every nonce is still fresh OS randomness, never a counter; only the
    system call is shared (system calls are dear on this path: one per seal
    showed as a tenth of the batch endpoint's time). The lock keeps two
    threads from taking the same bytes, and a forked child drops its parent's
    buffer instead of reusing it.
    """

    BATCH = 256

    def __init__(self) -> None:
        self._drop()
        alive = weakref.ref(self)  # the fork hook must not keep every sealer ever made

        def in_child() -> None:
            nonces = alive()
            if nonces is not None:
                nonces._drop()

        os.register_at_fork(after_in_child=in_child)

    def _drop(self) -> None:
        """Empty buffer, fresh lock (a parent's thread may have held the old one when it forked)."""
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0

    def take(self) -> bytes:
        with self._lock:
            if self._at >= len(self._buffer):
                self._buffer = os.urandom(NONCE_BYTES * self.BATCH)
                self._at = 0
            nonce = self._buffer[self._at : self._at + NONCE_BYTES]
            self._at += NONCE_BYTES
            return nonce


class PiiSealer:
    """Seals and opens personal data, and keys the hashes that stand in for it."""

    def __init__(self, keys_spec: str) -> None:
        keys = parse_keys(keys_spec)
        self._keys = dict(keys)
        # The development key reads, never seals or hashes, once a real key is listed.
        usable = [(kid, key) for kid, key in keys if kid != DEVELOPMENT_KEY_ID] or keys
        self.active_key_id, active_key = usable[-1]
        self.hash_key_id, hash_root = usable[0]
        self._active = AESGCM(active_key)
        self._openers = {kid: AESGCM(key) for kid, key in keys}
        self._hash_key = hmac.new(hash_root, b"wabapool search hash", hashlib.sha256).digest()
        # Every listed key's search-hash key, the hash key's first: rows hashed before a rotation still match.
        self._search_keys = [self._hash_key] + [
            hmac.new(key, b"wabapool search hash", hashlib.sha256).digest()
            for key in self._keys.values()
            if key != hash_root
        ]
        self._payload_key = hmac.new(hash_root, b"wabapool payload hash", hashlib.sha256).digest()
        self._cursor_key = hmac.new(hash_root, b"wabapool page cursor", hashlib.sha256).digest()
        self._header = self.active_key_id.encode() + b"."
        self._nonces = _Nonces()

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    @property
    def cursor_key(self) -> bytes:
        """The key page cursors are signed with (derived; never the sealing key itself)."""
        return self._cursor_key

    def seal(self, plaintext: str | None) -> bytes | None:
        if plaintext is None:
            return None
        nonce = self._nonces.take()
        return self._header + nonce + self._active.encrypt(nonce, plaintext.encode(), self._header)

    def open(self, sealed: bytes | None) -> str | None:
        if sealed is None:
            return None
        kid, _, rest = bytes(sealed).partition(b".")
        opener = self._openers.get(kid.decode("utf-8", "replace"))
        if opener is None:
            raise PiiKeyError(f"PII key {key_id_of(sealed)!r} is not in the key set", key_id_of(sealed))
        nonce, ciphertext = rest[:NONCE_BYTES], rest[NONCE_BYTES:]
        try:
            return opener.decrypt(nonce, ciphertext, kid + b".").decode()
        except InvalidTag as exc:
            name = kid.decode()
            raise PiiKeyError(f"a value sealed under PII key {name!r} does not open with it", name) from exc

    def open_all(self, sealed_values: Iterable[bytes | None]) -> list[str | None]:
        """`open` of each value, for an export's page: a value sealed under the active key (nearly all)
        opens inline, without `open`'s per-call parsing, which was as dear as the decryption itself."""
        header = self._header
        start = len(header)
        tag_start = start + NONCE_BYTES
        decrypt = self._openers[self.active_key_id].decrypt
        values = list(sealed_values)
        try:
            return [
                None
                if sealed is None
                else decrypt(sealed[start:tag_start], sealed[tag_start:], header).decode()
                if sealed.startswith(header)
                else self.open(sealed)
                for sealed in values
            ]
        except InvalidTag:
            return [self.open(sealed) for sealed in values]  # raises the PiiKeyError naming the key

    def needs_reseal(self, sealed: bytes | None) -> bool:
        return sealed is not None and key_id_of(sealed) != self.active_key_id

    def search_hash(self, value: str | None) -> str | None:
        """Keyed hash of the normalized value (E.164 for a phone number): equal inputs match, it reveals nothing."""
        if value is None:
            return None
        normalized = normalize_phone(value) or value.strip().lower()
        return hmac.digest(self._hash_key, normalized.encode(), "sha256").hex()

    def search_hashes(self, value: str) -> list[str]:
        """The value's search hash under every listed key (this set's own first), for a search across a rotation."""
        normalized = normalize_phone(value) or value.strip().lower()
        return [hmac.digest(key, normalized.encode(), "sha256").hex() for key in self._search_keys]

    def payload_hash(self, payload: bytes) -> str:
        """Keyed fingerprint of a request's payload (it holds personal data, so a plain hash would leak it)."""
        return hmac.digest(self._payload_key, payload, "sha256").hex()

    def __repr__(self) -> str:
        return f"PiiSealer(key_ids={list(self._keys)!r}, active={self.active_key_id!r})"
