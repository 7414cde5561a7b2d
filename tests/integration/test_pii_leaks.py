"""Nothing personal in what a run writes: logs, metrics, error bodies, the outbox."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from tests.api_support import INTERNAL, INTERNAL_HEADERS, PUBLIC, bearer, deduction_body
from tests.conftest import FakeClock
from tests.reports_support import provision, report_app
from wabapool.storage.tables import outbox_events

NAME = "Wulandari Prasetyaningrum"
PHONE = "+6285711223344"
SECRETS = (NAME, "Prasetyaningrum", PHONE, PHONE[1:], "85711223344")


async def test_a_run_writes_no_name_or_phone_number_outside_the_sealed_columns(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock(datetime(2026, 11, 10, 3, 0, tzinfo=UTC))
    written: list[str] = []
    async with report_app(f"sqlite:///{tmp_path / 'leak.db'}", clock) as (client, context):
        await provision(client, 1, wabas=("3330001",))

        async def post(body: dict, path: str = "/quota-managements/deduction") -> None:
            response = await client.post(f"{INTERNAL}{path}", json=body, headers=INTERNAL_HEADERS)
            if response.status_code >= 400:
                written.append(response.text)  # every error body: message and details

        personal = {"customer_name": NAME, "phone_number": PHONE}
        await post(deduction_body(1, "m1", waba_id="3330001", quantity=70, **personal))  # crosses low balance
        await post(deduction_body(1, "m1", waba_id="3330001", quantity=70, customer_name=NAME, phone_number="+1"))
        await post(deduction_body(1, "m2", waba_id="9999999", **personal))  # unknown WABA
        await post(deduction_body(1, "m3", waba_id="3330001", customer_name=NAME * 9, phone_number=PHONE))
        await post(deduction_body(1, "m4", waba_id="3330001", customer_name=NAME, phone_number=PHONE * 3))
        await post(deduction_body(1, "m5", waba_id="3330001", quantity=10**6, **personal))  # quota exceeded
        await post(
            {"items": [deduction_body(1, "m6", waba_id="3330001", phone_number=PHONE * 3)]},
            "/quota-managements/deductions",
        )
        await post(
            {"company_id": 1, "unique_code": "m1", "refund_code": "r1", "reason": "failed"}, "/quota-managements/refund"
        )
        for query in ({"phone_number": PHONE * 3}, {"phone_number": PHONE, "cursor": "bad"}):
            response = await client.get(f"{PUBLIC}/mcc_logs", params=query, headers=bearer(1))
            assert response.status_code in (400, 422)
            written.append(response.text)
        assert (
            await client.get(f"{PUBLIC}/mcc_logs", params={"phone_number": PHONE}, headers=bearer(1))
        ).status_code == 200
        written.append((await client.get("/metrics")).text)
        async with context.service.database.read() as connection:
            events = list(await connection.execute(select(outbox_events)))
        assert events, "the run raised events"
        written += [repr(tuple(event)) for event in events]
    captured = capsys.readouterr()
    written += [captured.out, captured.err]
    assert "mcc_logs" in captured.out  # the request log did run
    everything = "\n".join(written)
    for secret in SECRETS:
        assert secret not in everything, secret
