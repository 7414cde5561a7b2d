"""Personal data at rest: AES-GCM with a key ring, and a keyed hash for exact-match search.

`WABAPOOL_PII_KEYS` is `kid:base64key,…` (32-byte keys). The last key encrypts;
every key decrypts, so keys rotate by appending. The first key also derives the
search-hash key, so search keeps working across rotations.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import threading
import weakref

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
_NON_DIGITS = re.compile(r"\D")
# Embedded/demo mode only: a fixed, public key so a demo database stays readable across restarts.
DEVELOPMENT_KEYS = "dev:" + base64.b64encode(hashlib.sha256(b"wabapool development pii key").digest()).decode()


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
    def __init__(self, keys_spec: str) -> None:
        keys: list[tuple[str, bytes]] = []
        for part in filter(None, (p.strip() for p in keys_spec.split(","))):
            kid, _, encoded = part.partition(":")
            key = base64.b64decode(encoded)
            if not kid or len(key) != 32:
                raise ValueError("each PII key is kid:base64 of 32 bytes")
            keys.append((kid, key))
        if not keys:
            raise ValueError("at least one PII key is needed")
        self._keys = dict(keys)
        self._active_kid, active_key = keys[-1]
        self._active = AESGCM(active_key)
        self._hash_key = hmac.new(keys[0][1], b"wabapool search hash", hashlib.sha256).digest()
        self._header = self._active_kid.encode() + b"."
        self._nonces = _Nonces()

    def seal(self, plaintext: str | None) -> bytes | None:
        if plaintext is None:
            return None
        nonce = self._nonces.take()
        return self._header + nonce + self._active.encrypt(nonce, plaintext.encode(), self._header)

    def open(self, sealed: bytes | None) -> str | None:
        if sealed is None:
            return None
        kid, _, rest = bytes(sealed).partition(b".")
        key = self._keys.get(kid.decode())
        if key is None:
            raise ValueError(f"PII key {kid.decode()!r} is not in the key ring")
        nonce, ciphertext = rest[:NONCE_BYTES], rest[NONCE_BYTES:]
        return AESGCM(key).decrypt(nonce, ciphertext, kid + b".").decode()

    def search_hash(self, value: str | None) -> str | None:
        """Keyed hash of the normalized value: equal inputs match, the hash reveals nothing."""
        if value is None:
            return None
        normalized = _NON_DIGITS.sub("", value) or value.strip().lower()
        return hmac.digest(self._hash_key, normalized.encode(), "sha256").hex()
