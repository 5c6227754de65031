"""first with a broker that is down, unreachable, slow or failing: a JSON 5xx within the configured bound,
and first keeps serving. first does not retry (docs/robustness.md says why)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.faults.launch import running_together
from tests.faults.peers import NEVER, Peer, Script
from tests.support import poll_until
from tools.stack import Service, free_port

INGRESS = "/default/default"


def _get(first: Service) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    reply = httpx.get(first.url + "/", timeout=30)
    return reply, time.monotonic() - started


def _assert_problem(reply: httpx.Response, status: int, words: str) -> str:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert words in body["error"], body
    assert body["event_id"], body
    return str(body["event_id"])


@pytest.fixture(scope="module")
def blackhole() -> Iterator[int]:
    """A port whose listen queue is full: the kernel drops new SYNs, so a connect hangs (a dead host)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()


@pytest.fixture(scope="module")
def broker() -> Iterator[Peer]:
    with Peer({INGRESS: Script(NEVER)}) as broker:
        yield broker


@pytest.fixture(scope="module")
def firsts(broker: Peer, blackhole: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Service]]:
    """first three times: with the broker down, behind a dead host, and scripted (slow, failing, healthy)."""
    # Long timeouts where they must not matter, so that waiting on one cannot pass for an answer "at once".
    quiet = {"OTEL_TRACES_EXPORTER": "none", "SINK_CONNECT_TIMEOUT": "30", "SINK_TIMEOUT": "30"}
    dead_host = f"http://127.0.0.1:{blackhole}{INGRESS}"
    specs = {
        "down": ("first", {**quiet, "K_SINK": f"http://127.0.0.1:{free_port()}{INGRESS}"}),
        "dead-host": ("first", {**quiet, "K_SINK": dead_host, "SINK_CONNECT_TIMEOUT": "1"}),
        "scripted": ("first", {**quiet, "K_SINK": broker.url + INGRESS, "SINK_TIMEOUT": "1"}),
    }
    with running_together(specs, tmp_path_factory.mktemp("first-to-broker")) as services:
        yield services


def test_broker_down_answers_503_at_once(firsts: dict[str, Service]) -> None:
    first = firsts["down"]
    for _ in range(3):
        reply, took = _get(first)
        event_id = _assert_problem(reply, 503, "unreachable")
        assert took < 5  # refused: no timeout to wait for
    poll_until(lambda: f"event {event_id} not delivered" in first.log(), 5, "first to log the lost send")
    assert httpx.get(first.url + "/healthz", timeout=2).status_code == 200


def test_broker_that_cannot_be_connected_to_answers_504_within_the_connect_timeout(firsts: dict[str, Service]) -> None:
    reply, took = _get(firsts["dead-host"])
    _assert_problem(reply, 504, "did not answer in time")
    assert 1 <= took < 6  # SINK_CONNECT_TIMEOUT=1, not SINK_TIMEOUT=30


async def _concurrently(url: str, count: int) -> list[tuple[int, float]]:
    async with httpx.AsyncClient(timeout=30) as client:

        async def one() -> tuple[int, float]:
            started = time.monotonic()
            reply = await client.get(url)
            return reply.status_code, time.monotonic() - started

        return await asyncio.gather(*(one() for _ in range(count)))


def test_slow_then_failing_then_healthy_broker(firsts: dict[str, Service], broker: Peer) -> None:
    first = firsts["scripted"]
    # Slow: every request gets 504 after SINK_TIMEOUT=1, even many at once, and first stays responsive.
    started = time.monotonic()
    results = asyncio.run(_concurrently(first.url + "/", 8))
    assert [status for status, _ in results] == [504] * 8
    assert all(1 <= took < 6 for _, took in results), results
    assert time.monotonic() - started < 8
    _assert_problem(_get(first)[0], 504, "did not answer in time")
    # Failing: the broker's error becomes a 502 naming it.
    broker.scripts[INGRESS] = Script(500)
    _assert_problem(_get(first)[0], 502, "answered 500")
    broker.scripts[INGRESS] = Script(404)
    _assert_problem(_get(first)[0], 502, "answered 404")
    # Healthy again: first recovers without a restart.
    broker.scripts[INGRESS] = Script(202)
    reply, _ = _get(first)
    assert reply.status_code == 200, reply.text
    # No retries: each request to first reached the broker exactly once.
    assert len(broker.at(INGRESS)) == 8 + 1 + 2 + 1
