"""Money as integers in the currency's minor unit, never float.

The currencies and their minor units are ISO 4217's, from the `iso4217` package (the published list
it ships, updated with each amendment), never a hand table: a code the list does not hold, or one it
holds without a minor unit (gold `XAU`, the SDR `XDR`, the test code `XTS`, "no currency" `XXX`: units
of account, not money) is not a currency we bill in.
"""

from __future__ import annotations

from decimal import Decimal

from iso4217 import Currency

# Active ISO 4217 money codes and their exponents (digits after the decimal point): BHD 3, CLF 4,
# JPY/KRW/VND 0. Codes whose minor unit is "N.A." are left out: they are not money.
MINOR_UNITS: dict[str, int] = {c.code: c.exponent for c in Currency if c.exponent is not None}


class UnknownCurrency(ValueError):
    """A code that is not an active ISO 4217 money code."""


def is_money_code(currency: str) -> bool:
    """An active ISO 4217 currency with a minor unit, written as ISO writes it (three capitals)."""
    return currency in MINOR_UNITS


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point in the currency's display form (ISO 4217's minor unit)."""
    exponent = MINOR_UNITS.get(currency.upper())
    if exponent is None:
        raise UnknownCurrency(f"{currency!r} is not an ISO 4217 money code")
    return exponent


def to_major(amount_minor: int, currency: str) -> Decimal:
    """Exact major-unit value, for reports and CSV."""
    return Decimal(amount_minor).scaleb(-currency_exponent(currency))


def format_major(amount_minor: int, currency: str) -> str:
    """Plain decimal text (`-1234.50`) with exactly the currency's digits."""
    exponent = currency_exponent(currency)
    value = to_major(amount_minor, currency)
    return f"{value:.{exponent}f}"
