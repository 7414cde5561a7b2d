"""GET /api/core/v1/statements: the token's company only, owner/admin/supervisor; 403 in the envelope otherwise."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.api_support import (
    INTERNAL,
    INTERNAL_HEADERS,
    PUBLIC,
    api_client,
    bearer,
    deduction_body,
    provision,
    settings_for,
)

COMPANY = 8001
OTHER = 8002


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    from wabapool.storage.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(url)
    return url


async def test_statements_of_closed_cycles_are_readable_by_owner_admin_and_supervisor_only(sqlite_url: str) -> None:
    async with api_client(settings_for(sqlite_url)) as (client, context):
        await provision(client, COMPANY, allowance=100_000, unit_price=1_000)
        await provision(client, OTHER, wabas=("2002002",))
        response = await client.post(
            f"{INTERNAL}/quota-managements/deduction",
            json=deduction_body(COMPANY, "m-1", quantity=3),
            headers=INTERNAL_HEADERS,
        )
        assert response.status_code == 200, response.text
        now = context.service.clock()
        assert (await context.service.reset_cycles(at=now + timedelta(days=40)))[COMPANY] >= 1

        for role in ("owner", "admin", "supervisor"):
            response = await client.get(f"{PUBLIC}/statements", headers=bearer(COMPANY, role))
            assert response.status_code == 200, response.text
            page = response.json()
            first = page["data"][-1]  # newest first: the oldest closed cycle is last
            assert first["spent"] == 3_000 and first["deductions"] == 1
            assert first["spent_by_waba"] == [{"waba_id": "1001001", "amount": 3_000}]
            assert first["opening"] == {
                "initial_remaining": 100_000,
                "additional_remaining": 0,
                "postpaid_used": 0,
                "total": 100_000,
            }
            assert first["closing"]["initial_remaining"] == 97_000 and first["closing"]["total"] == 97_000
            assert first["currency"] == "IDR" and first["allowance"] == 100_000
        for role in ("agent", "member"):
            response = await client.get(f"{PUBLIC}/statements", headers=bearer(COMPANY, role))
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "forbidden"
        other = (await client.get(f"{PUBLIC}/statements", headers=bearer(OTHER, "owner"))).json()
        assert all(s["spent"] == 0 for s in other["data"])  # its own idle cycles, never the other company's
        assert (await client.get(f"{PUBLIC}/statements")).status_code == 401


async def test_statements_page_by_cursor(sqlite_url: str) -> None:
    async with api_client(settings_for(sqlite_url)) as (client, context):
        await provision(client, COMPANY)
        now = context.service.clock()
        await context.service.reset_cycles(at=now + timedelta(days=100))  # three or four closed cycles
        first = (await client.get(f"{PUBLIC}/statements?limit=2", headers=bearer(COMPANY))).json()
        assert len(first["data"]) == 2 and first["next_cursor"]
        rest = (
            await client.get(f"{PUBLIC}/statements", params={"cursor": first["next_cursor"]}, headers=bearer(COMPANY))
        ).json()
        starts = [s["cycle"]["starts_at"] for s in first["data"] + rest["data"]]
        assert starts == sorted(starts, reverse=True) and len(set(starts)) == len(starts) >= 3
        bad = await client.get(f"{PUBLIC}/statements?cursor=yesterday", headers=bearer(COMPANY))
        assert bad.status_code == 400 and bad.json()["error"]["details"] == {"field": "cursor"}


@pytest.mark.parametrize(
    "cursor",
    ["0001-01-01T00:00:00+14:00~1", "9999-12-31T23:59:59-14:00~1", "9999-12-31T23:59:59-14:00", "2026-01-01~0"],
)
async def test_statements_cursor_at_the_edge_of_the_calendar_is_a_400(sqlite_url: str, cursor: str) -> None:
    async with api_client(settings_for(sqlite_url)) as (client, _):
        await provision(client, COMPANY)
        response = await client.get(f"{PUBLIC}/statements", params={"cursor": cursor}, headers=bearer(COMPANY))
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"] == {"field": "cursor"}


async def test_statements_of_an_unknown_company_is_a_404_like_every_other_endpoint(sqlite_url: str) -> None:
    async with api_client(settings_for(sqlite_url)) as (client, _):
        response = await client.get(f"{PUBLIC}/statements", headers=bearer(424242))
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "unknown_company"
