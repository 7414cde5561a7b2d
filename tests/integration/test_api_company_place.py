"""A company's currency is an active ISO 4217 money code and its timezone a canonical IANA name (400 otherwise)."""

from __future__ import annotations

import httpx
import pytest

from tests.api_support import INTERNAL, INTERNAL_HEADERS, PUBLIC, bearer

COMPANY = 9301


async def _put(http: httpx.AsyncClient, body: dict[str, object]) -> httpx.Response:
    return await http.put(f"{INTERNAL}/companies/{COMPANY}", json=body, headers=INTERNAL_HEADERS)


@pytest.mark.parametrize("currency", ["ZZZ", "XAU", "XDR", "XTS", "XXX", "DEM"])
async def test_a_currency_that_is_not_active_money_is_refused(http: httpx.AsyncClient, currency: str) -> None:
    response = await _put(http, {"currency": currency})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"] == {"field": "currency"}
    assert (await http.get(f"{PUBLIC}/billings/info", headers=bearer(COMPANY))).status_code == 404  # nothing written


@pytest.mark.parametrize(("currency", "exponent"), [("BHD", 3), ("CLF", 4), ("VND", 0), ("KRW", 0), ("IDR", 2)])
async def test_billing_info_states_the_iso_4217_minor_unit(
    http: httpx.AsyncClient, currency: str, exponent: int
) -> None:
    assert (await _put(http, {"currency": currency})).status_code == 200
    info = (await http.get(f"{PUBLIC}/billings/info", headers=bearer(COMPANY))).json()
    assert (info["currency"], info["currency_exponent"]) == (currency, exponent)


@pytest.mark.parametrize("timezone", ["Asia", "localtime", "posixrules", "Factory", "Asia/Calcutta", "US/Eastern"])
async def test_a_timezone_that_is_not_a_canonical_iana_name_is_a_400(http: httpx.AsyncClient, timezone: str) -> None:
    response = await _put(http, {"timezone": timezone})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"] == {"field": "timezone"}


@pytest.mark.parametrize("timezone", ["Asia/Jakarta", "UTC", "America/New_York"])
async def test_a_canonical_timezone_is_accepted(http: httpx.AsyncClient, timezone: str) -> None:
    response = await _put(http, {"timezone": timezone})
    assert response.status_code == 200, response.text
    assert response.json()["timezone"] == timezone
