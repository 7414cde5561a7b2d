"""Personal data at rest: sealing, key rotation, search hashes, and nonces that never repeat."""

from __future__ import annotations

import base64
import multiprocessing
import os

import pytest

from wabapool.pii import NONCE_BYTES, PiiKeyError, PiiSealer


def key(kid: str) -> str:
    return f"{kid}:{base64.b64encode(os.urandom(32)).decode()}"


def nonce_of(sealed: bytes) -> bytes:
    _, _, rest = sealed.partition(b".")
    return rest[:NONCE_BYTES]


def test_a_sealed_value_opens_to_itself_and_does_not_show_the_plaintext() -> None:
    sealer = PiiSealer(key("k1"))
    sealed = sealer.seal("+62 812-3456-7890")
    assert sealed is not None and b"812" not in sealed
    assert sealer.open(sealed) == "+62 812-3456-7890"
    assert sealer.seal(None) is None and sealer.open(None) is None


def test_after_rotation_new_values_use_the_new_key_and_old_ones_still_open() -> None:
    old_key, new_key = key("k1"), key("k2")
    before = PiiSealer(old_key).seal("Budi")
    rotated = PiiSealer(f"{old_key},{new_key}")
    assert rotated.open(before) == "Budi"
    after = rotated.seal("Budi")
    assert after is not None and after.startswith(b"k2.")
    with pytest.raises(ValueError, match="not in the key set"):
        PiiSealer(old_key).open(after)


def test_the_search_hash_matches_the_same_number_however_it_is_written() -> None:
    sealer = PiiSealer(key("k1"))
    assert sealer.search_hash("+62 812-3456-7890") == sealer.search_hash("628123456 7890")
    assert sealer.search_hash("+62 812-3456-7890") != sealer.search_hash("+62 812-3456-7891")


def test_nonces_never_repeat_across_many_seals() -> None:
    sealer = PiiSealer(key("k1"))
    nonces = {nonce_of(sealer.seal("x") or b"") for _ in range(5_000)}
    assert len(nonces) == 5_000


def _child_nonces(sealer: PiiSealer, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put([nonce_of(sealer.seal("x") or b"") for _ in range(10)])


def test_a_forked_child_does_not_reuse_the_nonces_its_parent_had_buffered() -> None:
    sealer = PiiSealer(key("k1"))
    sealer.seal("x")  # the parent's buffer is filled
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_nonces, args=(sealer, queue))
    child.start()
    from_child = queue.get(timeout=30)
    child.join(timeout=30)
    from_parent = [nonce_of(sealer.seal("x") or b"") for _ in range(10)]
    assert not set(from_child) & set(from_parent)


def test_the_payload_hash_is_keyed_so_it_cannot_be_recomputed_without_the_key() -> None:
    import hashlib

    payload = b'[1, "wa", "wa_marketing_id", 1, "111", null, null, null, "Budi", "+6281234567890"]'
    one, other = PiiSealer(key("k1")), PiiSealer(key("k1"))
    assert one.payload_hash(payload) == one.payload_hash(payload)
    assert one.payload_hash(payload) != other.payload_hash(payload)
    assert one.payload_hash(payload) != hashlib.sha256(payload).hexdigest()
    assert len(one.payload_hash(payload)) == 64  # fits the stored column


def test_the_hashes_stay_put_when_a_key_is_appended() -> None:
    first = key("k1")
    before, after = PiiSealer(first), PiiSealer(f"{first},{key('k2')}")
    assert before.search_hash("+62 812 3456 7890") == after.search_hash("+6281234567890")
    assert before.payload_hash(b"x") == after.payload_hash(b"x")
    assert before.cursor_key == after.cursor_key


def test_open_all_opens_values_of_every_listed_key_as_open_does() -> None:
    old_key, new_key = key("k1"), key("k2")
    before = PiiSealer(old_key).seal("Budi")
    rotated = PiiSealer(f"{old_key},{new_key}")
    values = [rotated.seal("Siti ✓ 李"), None, before, rotated.seal("")]
    assert rotated.open_all(values) == ["Siti ✓ 李", None, "Budi", ""] == [rotated.open(v) for v in values]


def test_open_all_names_the_key_of_a_value_that_does_not_open() -> None:
    sealer = PiiSealer(key("k1"))
    sealed = sealer.seal("Budi")
    assert sealed is not None
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(PiiKeyError, match="'k1' does not open") as error:
        sealer.open_all([sealed, tampered])
    assert error.value.key_id == "k1"
