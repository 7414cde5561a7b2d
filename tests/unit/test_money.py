"""Money is exact: integers in the minor unit, formatted without float."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wabapool.domain.money import UnknownCurrency, currency_exponent, format_major, is_money_code, to_major


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (123450, "IDR", "1234.50"),
        (-123450, "IDR", "-1234.50"),
        (5, "IDR", "0.05"),
        (-5, "IDR", "-0.05"),
        (0, "IDR", "0.00"),
        (100, "USD", "1.00"),
        (1, "USD", "0.01"),
        (1234, "JPY", "1234"),
        (-1234, "JPY", "-1234"),
        (0, "JPY", "0"),
        (12345, "idr", "123.45"),  # the code is case-insensitive
        (1234567, "BHD", "1234.567"),  # three decimals (ISO 4217 minor unit 3)
        (-1, "KWD", "-0.001"),
        (12345, "CLF", "1.2345"),  # four decimals
        (25000, "VND", "25000"),  # no minor unit: 25,000 dong, not 250.00
        (1000, "KRW", "1000"),
        (9_223_372_036_854_775_807, "IDR", "92233720368547758.07"),  # largest BIGINT, no float rounding
        (10**15 + 1, "IDR", "10000000000000.01"),
    ],
)
def test_format_major_gives_exactly_the_currency_digits_without_rounding(amount: int, currency: str, text: str) -> None:
    assert format_major(amount, currency) == text


def test_currency_exponents_follow_iso_4217_for_billed_currencies() -> None:
    assert currency_exponent("IDR") == 2
    assert currency_exponent("jpy") == 0
    assert (currency_exponent("BHD"), currency_exponent("CLF"), currency_exponent("VND")) == (3, 4, 0)


@pytest.mark.parametrize("code", ["IDR", "USD", "JPY", "KRW", "VND", "BHD", "KWD", "CLF", "EUR", "SGD"])
def test_active_iso_4217_money_codes_are_currencies(code: str) -> None:
    assert is_money_code(code)


@pytest.mark.parametrize(
    "code",
    ["ZZZ", "XAU", "XAG", "XDR", "XTS", "XXX", "idr", "", "US", "USDX", "DEM", "IDR ", "ＩＤＲ"],
)
def test_codes_that_are_not_active_money_are_not_currencies(code: str) -> None:
    # ZZZ is no code, XAU/XAG/XDR/XTS/XXX have no minor unit (metals, units of account, tests), DEM is withdrawn.
    assert not is_money_code(code)


def test_formatting_an_unknown_currency_is_refused_not_guessed() -> None:
    with pytest.raises(UnknownCurrency):
        format_major(100, "ZZZ")


def test_to_major_is_an_exact_decimal() -> None:
    assert to_major(123450, "IDR") == Decimal("1234.50")
    assert isinstance(to_major(1, "IDR"), Decimal)
    assert to_major(1, "IDR") == Decimal("0.01")
    assert to_major(-7, "JPY") == Decimal(-7)


@given(
    amount=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    currency=st.sampled_from(["IDR", "USD", "JPY", "EUR", "BHD", "CLF", "VND"]),
)
def test_format_major_round_trips_to_the_same_minor_amount(amount: int, currency: str) -> None:
    text = format_major(amount, currency)
    exponent = currency_exponent(currency)
    assert Decimal(text).scaleb(exponent) == amount
    if exponent:
        assert len(text.split(".")[1]) == exponent
    else:
        assert "." not in text
    assert "e" not in text.lower()
