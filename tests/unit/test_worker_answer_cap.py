"""The worker reads a bounded prefix of a receiver's answer, whatever the receiver sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from wabapool.service.ssrf import Target
from wabapool.worker.delivery import RESPONSE_BODY_MAX_BYTES, Sender

TARGET = Target("http://hooks.example/in", "http", "hooks.example", 80, "/in", "93.184.216.34")
CHUNK = b"x" * 65_536
HUGE_BYTES = 300 * 1024 * 1024


class EndlessBody(httpx.AsyncByteStream):
    """An answer of HUGE_BYTES, produced only as it is read; counts what was pulled."""

    def __init__(self) -> None:
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < HUGE_BYTES:
            self.pulled += len(CHUNK)
            yield CHUNK


def _sender(status: int, stream: httpx.AsyncByteStream, seen: list[httpx.Request]) -> Sender:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, stream=stream, headers={"retry-after": "7"})

    return Sender(timeout_seconds=5, transport=httpx.MockTransport(answer))


async def test_a_300_mb_error_answer_is_read_only_up_to_the_cap() -> None:
    body, seen = EndlessBody(), []
    sender = _sender(500, body, seen)
    attempt = await sender.post(TARGET, headers={}, body=b"{}")
    await sender.close()
    assert attempt.status == 500 and attempt.retry_after == "7"
    assert attempt.error is not None and attempt.error.startswith("HTTP 500: xxx")
    assert body.pulled <= RESPONSE_BODY_MAX_BYTES + len(CHUNK)


async def test_a_300_mb_success_answer_still_counts_as_delivered() -> None:
    body, seen = EndlessBody(), []
    sender = _sender(204, body, seen)
    attempt = await sender.post(TARGET, headers={"webhook-id": "msg_1"}, body=b"{}")
    await sender.close()
    assert attempt.succeeded and attempt.error is None
    assert body.pulled <= RESPONSE_BODY_MAX_BYTES + len(CHUNK)
    assert seen[0].headers["accept-encoding"] == "identity"
    assert seen[0].headers["host"] == "hooks.example"


class TricklingBody(httpx.AsyncByteStream):
    """One byte every 50 ms, forever: each read is quick, the whole answer never ends."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            await asyncio.sleep(0.05)  # the trickle is the behaviour under test: the attempt timeout must cut it
            yield b"x"


async def test_an_answer_trickled_forever_is_cut_off_by_the_attempt_timeout() -> None:
    sender = Sender(
        timeout_seconds=0.5,
        transport=httpx.MockTransport(lambda request: httpx.Response(200, stream=TricklingBody())),
    )
    attempt = await sender.post(TARGET, headers={}, body=b"{}")
    await sender.close()
    assert attempt.status is None and attempt.reason == "timeout"
