"""Connections cost bounded resources (plugins/server.py): one that sends nothing, or not a whole request head,
is closed after HEADER_TIMEOUT; beyond MAX_CONNECTIONS a new one is refused with a 503 and a log line; a head
over MAX_HEADER_BYTES or MAX_HEADERS gets 431. Small limits here, so that the test is quick."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support import poll_until, running
from tools.stack import Service

HEADER_TIMEOUT = 1.0
MAX_CONNECTIONS = 5


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {
        "OTEL_TRACES_EXPORTER": "none",
        "HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "MAX_HEADER_BYTES": "4096",
        "MAX_HEADERS": "20",
    }
    with running("second", env, tmp_path_factory.mktemp("bounds")) as service:
        yield service


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the service closed `sock` (fails if it is still open after `seconds`)."""
    sock.settimeout(seconds)
    started = time.monotonic()
    try:
        while sock.recv(1024):
            pass
    except TimeoutError:
        pytest.fail(f"the connection was still open after {seconds}s")
    except ConnectionResetError:
        pass
    return time.monotonic() - started


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST / HTTP/1.1\r\nHost: x\r\n", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\n"],
    ids=["idle", "half a head", "half of the next head"],
)
def test_a_connection_without_a_whole_head_is_closed_after_the_timeout(second: Service, sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", second.port)) as sock:
        sock.sendall(sent)
        # The bound is HEADER_TIMEOUT; a wide margin for a busy machine, nowhere near "held for ever".
        assert _closed_within(sock, HEADER_TIMEOUT + 10) >= HEADER_TIMEOUT * 0.5


def test_a_connection_that_sends_its_head_in_time_is_served(second: Service) -> None:
    with httpx.Client() as client:
        for _ in range(3):  # keep-alive: the head timer starts again after each answer
            assert client.get(second.url + "/healthz").status_code == 200


def test_connections_beyond_the_limit_are_refused_with_a_503_and_a_log_line(second: Service) -> None:
    held = [socket.create_connection(("127.0.0.1", second.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in held:  # an answer on each proves the service has accepted it (kept alive after)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(1000).startswith(b"HTTP/1.1 200")
        with socket.create_connection(("127.0.0.1", second.port)) as extra:
            extra.settimeout(5)
            answer = extra.recv(1000)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"MAX_CONNECTIONS" in answer
        poll_until(lambda: "refused a connection" in second.log(), 5, "the refusal to be logged")
    finally:
        for sock in held:
            sock.close()
    poll_until(lambda: _healthy(second), 5, "second to take connections again")


def _healthy(second: Service) -> bool:
    try:
        return httpx.get(second.url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize(
    "headers",
    [{"x-big": "a" * 5000}, {f"x-h{i}": "v" for i in range(21)}],
    ids=["over MAX_HEADER_BYTES", "over MAX_HEADERS"],
)
def test_a_head_over_the_limits_gets_431(second: Service, headers: dict[str, str]) -> None:
    reply = httpx.get(second.url + "/healthz", headers=headers)
    assert reply.status_code == 431
    assert "MAX_HEADER_BYTES" in reply.json()["error"]
    assert httpx.get(second.url + "/healthz", headers={"x-fine": "a" * 3000}).status_code == 200


@pytest.mark.parametrize("pieces", [1, 2, 7], ids=["one chunk", "two chunks", "seven chunks"])
def test_a_head_under_the_limit_is_served_however_it_is_split(second: Service, pieces: int) -> None:
    """A head that arrives in pieces is counted once: 3.5 KB against MAX_HEADER_BYTES=4096 is served."""
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 3500 + b"\r\nConnection: close\r\n\r\n"
    size = -(-len(head) // pieces)
    with socket.create_connection(("127.0.0.1", second.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(head), size):
            sock.sendall(head[start : start + size])
            time.sleep(0.05)  # each piece its own read on the server
        answer = sock.recv(200)
    assert answer.startswith(b"HTTP/1.1 200"), answer
