"""Masking: what a supervisor sees of names and phone numbers."""

from __future__ import annotations

import pytest

from wabapool.masking import mask_name, mask_phone


def test_phone_mask_keeps_country_operator_prefix_and_last_four_digits() -> None:
    assert mask_phone("+6281234567890") == "+62812****7890"


def test_phone_mask_drops_formatting_characters() -> None:
    assert mask_phone("+62 812-3456-7890") == "+62812****7890"


@pytest.mark.parametrize("phone", ["12345", "081234", "1234567890", "+1", "abc"])
def test_phone_mask_hides_at_least_four_digits_of_short_numbers(phone: str) -> None:
    masked = mask_phone(phone)
    assert masked is not None and masked != phone
    digits = sum(ch.isdigit() for ch in phone)
    assert masked.count("*") >= min(4, max(digits, 1))


def test_name_mask_keeps_the_first_letter_of_each_longer_word() -> None:
    assert mask_name("Budi Santoso") == "B*** S******"
    assert mask_name("Siti") == "S***"


@pytest.mark.parametrize("name", ["A", "x y", "Al", "Li Na", " ", "é", "=1", "Ab Cd Ef"])
def test_name_mask_hides_every_name_however_short(name: str) -> None:
    masked = mask_name(name)
    assert masked is not None and masked != name
    assert not any(word in masked for word in name.split())


def test_masks_leave_missing_values_missing() -> None:
    assert mask_phone(None) is None
    assert mask_name(None) is None
