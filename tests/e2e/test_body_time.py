"""A request body is bounded in time (plugins/server.py): one that trickles in slower than BODY_MIN_RATE, or is
not complete within BODY_TIMEOUT, is answered 408 with a JSON body naming the setting, and one log line; the
service answers /healthz meanwhile. Small bounds here, so that the test is quick."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from plugins.server import RATE_GRACE
from tests.support import cloudevent_headers, running
from tools.stack import Service

BODY_TIMEOUT = 8.0
BODY_MIN_RATE = 100
MAX_CONNECTIONS = 6


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {
        "OTEL_TRACES_EXPORTER": "none",
        "BODY_TIMEOUT": str(BODY_TIMEOUT),
        "BODY_MIN_RATE": str(BODY_MIN_RATE),
        "MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    with running("second", env, tmp_path_factory.mktemp("body-time")) as service:
        yield service


def _trickle(port: int, bytes_a_second: int, answers: dict[int, tuple[float, bytes]], key: int) -> None:
    """Announce a 1,000,000-byte body and send `bytes_a_second` of it each second, until the service answers."""
    head = "".join(f"{name}: {value}\r\n" for name, value in cloudevent_headers().items())
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 1000000\r\n\r\n".encode())
        started = time.monotonic()
        sock.settimeout(1.0)
        answer = b""
        while time.monotonic() - started < 60:
            with contextlib.suppress(OSError):  # closed by the service: its answer is read below
                sock.sendall(b"x" * bytes_a_second)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        answers[key] = (time.monotonic() - started, answer)


def _json_body(answer: bytes) -> dict[str, str]:
    body: dict[str, str] = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    return body


def test_slow_and_late_bodies_get_a_408_while_healthz_answers(second: Service) -> None:
    answers: dict[int, tuple[float, bytes]] = {}
    # One a byte a second (under BODY_MIN_RATE), the others fast enough but never finishing (BODY_TIMEOUT);
    # together they hold all but one of MAX_CONNECTIONS.
    rates = [1] + [BODY_MIN_RATE * 3] * (MAX_CONNECTIONS - 2)
    threads = [
        threading.Thread(target=_trickle, args=(second.port, rate, answers, key)) for key, rate in enumerate(rates)
    ]
    for thread in threads:
        thread.start()
    time.sleep(1)
    healthy = httpx.get(second.url + "/healthz", timeout=5)
    for thread in threads:
        thread.join(90)
    assert healthy.status_code == 200
    slow_took, slow = answers[0]
    assert slow.startswith(b"HTTP/1.1 408"), slow
    assert "BODY_MIN_RATE" in _json_body(slow)["error"]
    assert RATE_GRACE - 1 <= slow_took < BODY_TIMEOUT, slow_took
    for key in range(1, len(rates)):
        took, late = answers[key]
        assert late.startswith(b"HTTP/1.1 408"), late
        assert "BODY_TIMEOUT" in _json_body(late)["error"]
        assert BODY_TIMEOUT - 1 <= took < BODY_TIMEOUT + 10, took
    # One line a body at most; the server's lines are rate-limited (plugins/logs.py: a flood of slow senders
    # must not flood the log), so the four that end together may share one, the rest counted later.
    lines = [line for line in second.log().splitlines() if "ended a request body" in line]
    assert 1 <= len(lines) <= len(rates), lines
    assert "over BODY_MIN_RATE=100 bytes/s" in lines[0]
    # Once answered, the connections are free again.
    assert httpx.get(second.url + "/healthz", timeout=5).status_code == 200


def test_a_body_sent_at_a_normal_pace_is_not_cut(second: Service) -> None:
    headers = cloudevent_headers()

    def paced() -> Iterator[bytes]:
        for _ in range(6):  # past RATE_GRACE, at 1000 bytes a second: above BODY_MIN_RATE
            yield b"y" * 1000
            time.sleep(1)

    reply = httpx.post(second.url + "/", headers=headers, content=paced(), timeout=30)
    assert reply.status_code == 204, reply.text
