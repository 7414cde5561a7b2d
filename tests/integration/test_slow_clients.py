"""Slow clients are cut off: headers sent a byte at a time close the connection, a body that trickles gets 408."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from tests.api_support import API_KEY, settings_for
from wabapool.api.slow_clients import HeaderTimeoutProtocol
from wabapool.bootstrap import create_app

HEADER_TIMEOUT_SECONDS = 0.5
BODY_TIMEOUT_SECONDS = 0.5
BYTE_PAUSE_SECONDS = 0.1
# How long the test waits at most for the cut: far past the timeouts, far below "forever".
GIVE_UP_SECONDS = 10.0


class QuickHeaderTimeout(HeaderTimeoutProtocol):
    header_timeout_seconds = HEADER_TIMEOUT_SECONDS


@contextlib.contextmanager
def serving(app: Any) -> Iterator[int]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", http=QuickHeaderTimeout)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and server.servers):
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def trickle(port: int, request: bytes) -> tuple[bytes, float, int]:
    """Send `request` a byte every BYTE_PAUSE_SECONDS; what came back, when the server closed, bytes sent."""
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.settimeout(BYTE_PAUSE_SECONDS)
        started, answer, sent = time.monotonic(), b"", 0
        for byte in request:
            try:
                client.sendall(bytes([byte]))
                sent += 1
                chunk = client.recv(65536)
                if not chunk:
                    return answer, time.monotonic() - started, sent
                answer += chunk
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return answer, time.monotonic() - started, sent
            if time.monotonic() - started > GIVE_UP_SECONDS:
                break
        client.settimeout(GIVE_UP_SECONDS)
        with contextlib.suppress(ConnectionResetError):
            while chunk := client.recv(65536):
                answer += chunk
        return answer, time.monotonic() - started, sent


def test_a_client_sending_its_headers_a_byte_at_a_time_is_cut_off(tmp_path) -> None:
    app = create_app(settings_for(f"sqlite:///{tmp_path / 'slow.db'}"))
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with serving(app) as port:
        answer, seconds, sent = trickle(port, request)
    assert answer == b""  # closed, never answered
    assert sent < len(request)
    assert seconds < HEADER_TIMEOUT_SECONDS + 3


def test_a_client_sending_its_body_a_byte_at_a_time_gets_408_in_the_envelope(tmp_path) -> None:
    app = create_app(settings_for(f"sqlite:///{tmp_path / 'slow.db'}", body_timeout_seconds=BODY_TIMEOUT_SECONDS))
    body = b'{"company_id": 1, "padding": "' + b"a" * 200 + b'"}'
    head = (
        b"POST /iag/v1/quota-managements/deduction HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Api-Key: " + API_KEY.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with serving(app) as port, socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(head)
        answer, seconds, sent = trickle_on(client, body)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"code":"request_timeout"' in answer.replace(b" ", b"")
    assert sent < len(body) and seconds < BODY_TIMEOUT_SECONDS + 3


def trickle_on(client: socket.socket, body: bytes) -> tuple[bytes, float, int]:
    client.settimeout(BYTE_PAUSE_SECONDS)
    started, answer, sent = time.monotonic(), b"", 0
    for byte in body:
        try:
            client.sendall(bytes([byte]))
            sent += 1
            chunk = client.recv(65536)
            answer += chunk
            if not chunk or answer:
                break
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    client.settimeout(GIVE_UP_SECONDS)
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        while chunk := client.recv(65536):
            answer += chunk
    return answer, time.monotonic() - started, sent


def test_a_request_whose_headers_come_at_once_is_served_on_a_kept_alive_connection(tmp_path) -> None:
    app = create_app(settings_for(f"sqlite:///{tmp_path / 'slow.db'}"))
    with serving(app) as port, socket.create_connection(("127.0.0.1", port)) as client:
        client.settimeout(GIVE_UP_SECONDS)
        for _ in range(2):
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(65536).startswith(b"HTTP/1.1 200")
