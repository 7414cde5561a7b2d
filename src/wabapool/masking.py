"""Masking personal data for readers who may not see it (SPEC 5: supervisors see names and numbers masked).

Pure functions on strings. A mask never returns its input: every name, however
short, loses letters (`A` → `*`, `x y` → `* *`), and every phone number loses
at least four digits (all of them when it has fewer).
"""

from __future__ import annotations

import re

# Enough of a phone number to recognise it (country and operator prefix, last digits).
PHONE_VISIBLE_PREFIX_DIGITS = 5
PHONE_VISIBLE_SUFFIX_DIGITS = 4
PHONE_HIDDEN_MIN_DIGITS = 4
# A word keeps its first letter only when enough is left hidden: "Al" would otherwise show half of itself.
NAME_WORD_MIN_LENGTH_FOR_INITIAL = 3

_WORD = re.compile(r"\S+")


def mask_phone(phone: str | None) -> str | None:
    """`+6281234567890` → `+62812****7890`; short numbers keep less, so at least four digits are hidden."""
    if phone is None:
        return None
    digits = "".join(ch for ch in phone if ch.isdigit())
    if not digits:
        return "*" * max(1, len(phone))
    suffix = min(PHONE_VISIBLE_SUFFIX_DIGITS, len(digits) // 3)
    prefix = max(0, min(PHONE_VISIBLE_PREFIX_DIGITS, len(digits) - suffix - PHONE_HIDDEN_MIN_DIGITS))
    hidden = len(digits) - prefix - suffix
    plus = "+" if phone.lstrip().startswith("+") else ""
    return plus + digits[:prefix] + "*" * hidden + digits[len(digits) - suffix :]


def _mask_word(word: str) -> str:
    if len(word) < NAME_WORD_MIN_LENGTH_FOR_INITIAL:
        return "*" * len(word)
    return word[0] + "*" * (len(word) - 1)


def mask_name(name: str | None) -> str | None:
    """`Budi Santoso` → `B*** S******`; words under three characters are hidden whole (`A` → `*`)."""
    if name is None:
        return None
    masked = _WORD.sub(lambda match: _mask_word(match[0]), name)
    # A name of nothing but spaces still must not come back as itself.
    return masked if masked.strip() else "*"
