"""The trace backend down or hanging: requests are not slowed, the span queue stays bounded, the exporter's
errors are logged at a bounded rate, and SIGTERM still ends within OTEL_BSP_EXPORT_TIMEOUT."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.faults.launch import running_together
from tests.faults.peers import NEVER, Peer, Script
from tests.support import poll_until
from tools.stack import Service, free_port

INGRESS = "/default/default"
REQUESTS = 30
QUICK = 3.0
"""Seconds a request through first may take (generous for a busy machine): far below the hanging exporter's
30 s timeout."""


def _send_many(first: Service) -> list[float]:
    took = []
    with httpx.Client(timeout=10) as client:
        for _ in range(REQUESTS):
            started = time.monotonic()
            assert client.get(first.url + "/").status_code == 200
            took.append(time.monotonic() - started)
    return took


def _lines(service: Service, text: str) -> list[str]:
    return [line for line in service.log().splitlines() if text in line]


@pytest.fixture(scope="module")
def backend() -> Iterator[Peer]:
    """A trace backend that takes the export request and never answers."""
    with Peer({"/v1/traces": Script(NEVER)}) as backend:
        yield backend


@pytest.fixture(scope="module")
def firsts(backend: Peer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Service]]:
    with Peer({INGRESS: Script(202)}) as broker:
        # Export often, so that the failures pile up within the test.
        env = {"K_SINK": broker.url + INGRESS, "OTEL_BSP_SCHEDULE_DELAY": "20"}
        down = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "0.2",  # give up fast: many failed exports
        }
        hanging = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": backend.url,
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10",
            "OTEL_BSP_MAX_QUEUE_SIZE": "30",  # about 3 spans a request: full after 10 requests
            "OTEL_EXPORTER_OTLP_TIMEOUT": "30",
            "OTEL_BSP_EXPORT_TIMEOUT": "1000",
        }
        specs = {"down": ("first", {**env, **down}), "hanging": ("first", {**env, **hanging})}
        with running_together(specs, tmp_path_factory.mktemp("trace-backend")) as services:
            yield services


def test_backend_down_does_not_flood_the_log(firsts: dict[str, Service]) -> None:
    first = firsts["down"]
    took = _send_many(first)
    assert max(took) < QUICK, took
    poll_until(lambda: _lines(first, "Failed to export"), 5, "first to log the failed exports")
    _send_many(first)  # many more failed exports ...
    time.sleep(0.5)  # ... each one ending within OTEL_EXPORTER_OTLP_TIMEOUT
    # ... and still one line per kind of failure within the 30 s quiet period (without the limit: one a batch).
    assert len(_lines(first, "Failed to export")) == 1, first.log()
    assert len(_lines(first, "Transient error")) <= 1, first.log()


def test_backend_hanging_keeps_requests_fast_queue_bounded_and_shutdown_bounded(
    firsts: dict[str, Service], backend: Peer
) -> None:
    first = firsts["hanging"]
    took = _send_many(first)
    # The batch worker exports on its own thread, so it may reach the backend only after the requests are answered.
    poll_until(lambda: backend.at("/v1/traces"), 5, "the exporter to reach the backend")
    assert max(took) < QUICK, took
    # The queue is bounded: spans beyond it are dropped, and that is said once, not once per span.
    dropped = poll_until(lambda: _lines(first, "Queue full"), 5, "first to log dropped spans")
    assert len(dropped) == 1, first.log()
    started = time.monotonic()
    first.process.send_signal(signal.SIGTERM)
    code = first.process.wait(15)
    assert code in (0, -signal.SIGTERM), first.log()
    assert time.monotonic() - started < 8  # OTEL_BSP_EXPORT_TIMEOUT=1 s, not the exporter's 30 s
    assert _lines(first, "spans not all exported within 1.0s at shutdown"), first.log()
