"""Zero-code: first and second under `opentelemetry-instrument`. The in-code setup steps aside for the distro's
provider, so nothing is instrumented twice, and still flushes that provider on SIGTERM, so nothing is lost."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import B3_ERA
from tests.faults.peers import Peer
from tests.support import poll_until
from tools import zero_code
from tools.otlp_receiver import Receiver
from tools.spans import Span
from tools.stack import Service, free_port, running_all, start_service


def _stop(service: Service) -> None:
    service.process.send_signal(signal.SIGTERM)
    try:
        service.process.wait(15)
    except subprocess.TimeoutExpired:
        service.process.kill()
        raise


def _kinds(spans: list[Span]) -> list[str]:
    return sorted(s.kind for s in spans)


def test_one_span_each_and_all_of_them_flushed_at_sigterm(
    lone: dict[str, Service], sink: Peer, receiver: Receiver
) -> None:
    first, second = lone["zero-code"], lone["zero-code-second"]
    reply = httpx.get(first.url + "/", timeout=10)
    assert reply.status_code == 200, reply.text
    trace_id = reply.json()["trace_id"]
    # second gets what the broker would deliver: the event first sent, with its trace headers.
    arrived = sink.at("/zero-code")[-1]
    headers = {k: v for k, v in arrived.headers.items() if k not in ("host", "content-length", "connection")}
    delivered = httpx.post(second.url + "/", headers=headers, content=arrived.body, timeout=10)
    assert delivered.status_code == 204, delivered.text
    # The batch delay is far away: the spans leave only because SIGTERM flushes them.
    assert receiver.spans(trace_id) == []
    _stop(first)
    _stop(second)

    def both_flushed() -> list[Span] | None:
        spans = receiver.spans(trace_id)
        return spans if {s.service for s in spans} == {"first", "second"} else None

    spans = poll_until(both_flushed, 10, f"the zero-code spans of trace {trace_id}, flushed at SIGTERM")
    internal = ("http send", "http receive")
    mine = {n: [s for s in spans if s.service == n and not s.name.endswith(internal)] for n in ("first", "second")}
    # One SERVER span a request (the instrumentor's; FastAPI's own telemetry steps aside) and one CLIENT span a send:
    # instrumented once. (The instrumentor adds its internal `http send`/`http receive` spans.)
    assert _kinds(mine["first"]) == ["CLIENT", "PRODUCER", "SERVER"], mine["first"]
    assert _kinds(mine["second"]) == ["CONSUMER", "SERVER"], mine["second"]
    client = next(s for s in mine["first"] if s.kind == "CLIENT")
    server = next(s for s in mine["second"] if s.kind == "SERVER")
    assert server.parent_id == client.span_id, "first's CLIENT span is the parent second continues"
    for service in (first, second):
        assert "Overriding of current TracerProvider is not allowed" not in service.log(), service.log()
        assert "Attempting to instrument while already instrumented" not in service.log(), service.log()


@pytest.fixture(scope="module")
def b3_firsts(sink: Peer, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Service]]:
    """first in code and under opentelemetry-instrument, each posting to its own path of the recording sink."""
    log_dir = tmp_path_factory.mktemp("b3-defer")
    services = {}
    for mode in ("code", "zero-code"):
        env = {
            "OTEL_SERVICE_NAME": "first",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "K_SINK": f"{sink.url}/b3-defer-{mode}",
            **B3_ERA,
            **(zero_code.ENV if mode == "zero-code" else {}),
        }
        command = [*zero_code.LAUNCHER, sys.executable, "-m", "first"] if mode == "zero-code" else None
        services[mode] = start_service("first", free_port(), env, log_dir / f"{mode}.log", command=command)
    with running_all(services) as healthy:
        yield healthy


@pytest.mark.parametrize("mode", ["code", "zero-code"])
def test_b3_defer_is_sampled_here_in_both_runs(
    mode: str, b3_firsts: dict[str, Service], sink: Peer, receiver: Receiver
) -> None:
    """B3 ids with no sampling decision ("defer"): this service's sampler decides, as for a new trace, keeping the
    caller's trace id; under opentelemetry-instrument too, where the distro's sampler alone would drop it."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    reply = httpx.get(b3_firsts[mode].url + "/", headers={"X-B3-TraceId": trace_id, "X-B3-SpanId": span_id}, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.json()["trace_id"] == trace_id

    def server_span() -> Span | None:
        found = [s for s in receiver.spans(trace_id) if s.service == "first" and s.kind == "SERVER"]
        return found[0] if found else None

    span = poll_until(server_span, 10, f"first's SERVER span of the deferred B3 trace {trace_id} ({mode})")
    assert span.parent_id == span_id, "the span continues the caller's B3 span"
    sent = sink.at(f"/b3-defer-{mode}")[-1].headers
    assert sent["x-b3-traceid"] == trace_id and sent["x-b3-sampled"] == "1", "the decision goes downstream"
