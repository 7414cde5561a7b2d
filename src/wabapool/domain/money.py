"""Money as integers in the currency's minor unit, never float."""

from __future__ import annotations

from decimal import Decimal

# ISO 4217 exponents for the currencies we bill in; anything else defaults to 2.
CURRENCY_EXPONENTS: dict[str, int] = {"IDR": 2, "USD": 2, "SGD": 2, "MYR": 2, "EUR": 2, "JPY": 0}


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point in the currency's display form."""
    return CURRENCY_EXPONENTS.get(currency.upper(), 2)


def to_major(amount_minor: int, currency: str) -> Decimal:
    """Exact major-unit value, for reports and CSV."""
    return Decimal(amount_minor).scaleb(-currency_exponent(currency))


def format_major(amount_minor: int, currency: str) -> str:
    """Plain decimal text (`-1234.50`) with exactly the currency's digits."""
    exponent = currency_exponent(currency)
    value = to_major(amount_minor, currency)
    return f"{value:.{exponent}f}"
