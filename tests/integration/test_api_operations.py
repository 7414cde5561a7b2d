"""Operations endpoints, request ids and metrics."""

from __future__ import annotations

from tests.api_support import INTERNAL, INTERNAL_HEADERS, api_client, deduction_body, provision, settings_for
from wabapool.storage.migrate import upgrade


async def test_health_ready_and_metrics_answer_and_count_deductions(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    upgrade(url)
    async with api_client(settings_for(url)) as (client, _):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).json() == {"status": "ok"}
        await provision(client, 3)
        await client.post(
            f"{INTERNAL}/quota-managements/deduction", json=deduction_body(3, "m1"), headers=INTERNAL_HEADERS
        )
        await client.post(
            f"{INTERNAL}/quota-managements/deduction",
            json=deduction_body(3, "m1", quantity=2),
            headers=INTERNAL_HEADERS,
        )
        text = (await client.get("/metrics")).text
        assert 'wabapool_deductions_total{code="",result="applied"}' in text
        assert 'wabapool_deductions_total{code="idempotency_conflict",result="rejected"}' in text
        assert 'wabapool_deducted_amount_minor_total{quota_type="initial"}' in text
        assert 'route="/iag/v1/quota-managements/deduction"' in text


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path) -> None:
    settings = settings_for("postgresql://nobody@127.0.0.1:1/none")
    async with api_client(settings) as (client, _):
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "unavailable"


async def test_request_id_is_returned_and_a_sane_incoming_one_is_kept(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'rid.db'}"
    upgrade(url)
    async with api_client(settings_for(url)) as (client, _):
        generated = await client.get("/healthz")
        assert len(generated.headers["x-request-id"]) == 32
        kept = await client.get("/healthz", headers={"X-Request-Id": "trace-123"})
        assert kept.headers["x-request-id"] == "trace-123"
        replaced = await client.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
        assert replaced.headers["x-request-id"] != "bad id with spaces"


async def test_api_keys_never_appear_in_logs(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'logs.db'}"
    upgrade(url)
    async with api_client(settings_for(url)) as (client, _):
        await client.post(
            f"{INTERNAL}/quota-managements/deduction",
            json=deduction_body(3, "m1"),
            headers={"X-Api-Key": "wrong-key-but-still-secret-123"},
        )
        await provision(client, 3)
    output = capsys.readouterr().out
    assert "wrong-key-but-still-secret-123" not in output
    assert INTERNAL_HEADERS["X-Api-Key"] not in output
    assert '"caller": "pipeline"' in output
