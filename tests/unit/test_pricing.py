"""The price list as data: company, market and time decide which entry prices a message."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.unit.builders import COMPANY_ID, pool_state, utc
from wabapool.domain import operations
from wabapool.domain.pricing import PriceEntry, market_of, resolve_price

CODE = "wa_marketing_id"
LONG_AGO = utc(2025, 7, 1)
AT = utc(2026, 11, 10)


def entry(
    price: int,
    *,
    company_id: int | None = None,
    market: str | None = None,
    effective_from: datetime = LONG_AGO,
) -> PriceEntry:
    return PriceEntry(CODE, price, effective_from, company_id=company_id, market=market)


def price_at(entries: list[PriceEntry], *, market: str | None = None, at: datetime = AT) -> int | None:
    found = resolve_price(entries, company_id=COMPANY_ID, market=market, at=at)
    return None if found is None else found.unit_price_minor


# --- resolve_price ----------------------------------------------------------------------------


def test_the_default_price_applies_when_the_company_has_no_override() -> None:
    assert price_at([entry(500)]) == 500


def test_a_company_price_overrides_the_default_in_either_order() -> None:
    assert price_at([entry(500), entry(420, company_id=COMPANY_ID)]) == 420
    assert price_at([entry(420, company_id=COMPANY_ID), entry(500)]) == 420


def test_another_companys_override_is_ignored() -> None:
    assert price_at([entry(500), entry(1, company_id=COMPANY_ID + 1)]) == 500
    assert price_at([entry(1, company_id=COMPANY_ID + 1)]) is None


def test_a_market_specific_price_overrides_the_any_market_price() -> None:
    entries = [entry(500), entry(650, market="62"), entry(900, market="1")]
    assert price_at(entries, market="62") == 650
    assert price_at(entries, market="1") == 900


def test_the_any_market_price_applies_to_a_market_without_its_own_entry_or_an_unknown_market() -> None:
    entries = [entry(500), entry(650, market="62")]
    assert price_at(entries, market="65") == 500
    assert price_at(entries, market=None) == 500


def test_a_market_specific_price_never_applies_to_another_market() -> None:
    assert price_at([entry(650, market="62")], market="65") is None


def test_a_company_market_price_beats_every_other_layer() -> None:
    entries = [
        entry(500),
        entry(650, market="62"),
        entry(420, company_id=COMPANY_ID),
        entry(300, company_id=COMPANY_ID, market="62"),
    ]
    assert price_at(entries, market="62") == 300
    assert price_at(entries, market="65") == 420


def test_a_company_any_market_price_beats_a_default_market_specific_price() -> None:
    # The company layer is checked before the market layer: a negotiated price is the
    # company's price everywhere unless the company also names a market.
    entries = [entry(650, market="62"), entry(420, company_id=COMPANY_ID)]
    assert price_at(entries, market="62") == 420


def test_a_newer_entry_of_a_less_specific_layer_does_not_replace_a_more_specific_one() -> None:
    entries = [entry(650, market="62"), entry(700, effective_from=utc(2026, 10, 1))]
    assert price_at(entries, market="62") == 650
    assert price_at(entries, market="65") == 700


def test_the_entry_in_force_at_the_time_is_used_and_future_entries_are_ignored() -> None:
    entries = [
        entry(400, effective_from=utc(2025, 7, 1)),
        entry(450, effective_from=utc(2026, 1, 1)),
        entry(999, effective_from=utc(2027, 1, 1)),  # announced, not yet in force
    ]
    assert price_at(entries, at=utc(2025, 12, 31, 23, 59, 59)) == 400
    assert price_at(entries, at=utc(2026, 1, 1)) == 450  # in force from its first instant
    assert price_at(entries, at=AT) == 450
    assert price_at(entries, at=utc(2027, 1, 1)) == 999


def test_no_price_before_the_first_entry_takes_effect() -> None:
    assert price_at([entry(400, effective_from=utc(2027, 1, 1))]) is None
    assert price_at([]) is None


def test_a_future_company_override_does_not_shadow_the_default_in_force() -> None:
    entries = [entry(500), entry(1, company_id=COMPANY_ID, effective_from=utc(2027, 1, 1))]
    assert price_at(entries) == 500


def test_a_free_rule_is_a_zero_price_row_that_changes_on_its_effective_date() -> None:
    # Utility templates in an open service window: free, until Meta's change from 2026-10-01.
    entries = [entry(0), entry(300, effective_from=utc(2026, 10, 1))]
    free = resolve_price(entries, company_id=COMPANY_ID, market=None, at=utc(2026, 9, 30, 23))
    assert free is not None and free.unit_price_minor == 0
    assert price_at(entries, at=utc(2026, 10, 1)) == 300


def test_a_free_message_is_priced_zero_and_takes_nothing_from_the_pool() -> None:
    found = resolve_price([entry(0)], company_id=COMPANY_ID, market="62", at=AT)
    assert found is not None
    state = pool_state()
    change = operations.deduct(state, 5 * found.unit_price_minor)
    assert change.state == state and change.moves == [] and change.events == []


# --- market_of --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("+62 812-3456-7890", "62"),
        ("6281234567890", "62"),
        ("+1 868 555 0100", "1868"),  # Trinidad and Tobago, not the US/Canada "1"
        ("+1 415 555 0100", "1"),
        ("+65 6123 4567", "65"),
        ("+44 20 7946 0000", None),
        ("", None),
        (None, None),
    ],
)
def test_market_is_the_longest_known_calling_code_the_number_starts_with(
    phone: str | None, expected: str | None
) -> None:
    assert market_of(phone, {"1", "1868", "62", "65", "6"}) == expected


def test_market_of_ignores_formatting_characters() -> None:
    assert market_of("(+62) 812.3456.7890", ["62"]) == "62"


def test_market_of_with_no_known_markets_is_none() -> None:
    assert market_of("+62 812", []) is None
