"""Zero-code: first and second under `opentelemetry-instrument`. The in-code setup steps aside for the distro's
provider, so nothing is instrumented twice, and still flushes that provider on SIGTERM, so nothing is lost."""

from __future__ import annotations

import signal
import subprocess

import httpx

from tests.faults.peers import Peer
from tests.support import poll_until
from tools.otlp_receiver import Receiver
from tools.spans import Span
from tools.stack import Service

STEPPED_ASIDE = "tracer provider already installed"


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
    # One SERVER span a request and one CLIENT span a send: instrumented once. (The distro's ASGI
    # instrumentation adds its internal `http send`/`http receive` spans, which the in-code setup turns off.)
    assert _kinds(mine["first"]) == ["CLIENT", "PRODUCER", "SERVER"], mine["first"]
    assert _kinds(mine["second"]) == ["CONSUMER", "SERVER"], mine["second"]
    client = next(s for s in mine["first"] if s.kind == "CLIENT")
    server = next(s for s in mine["second"] if s.kind == "SERVER")
    assert server.parent_id == client.span_id, "first's CLIENT span is the parent second continues"
    for service in (first, second):
        assert STEPPED_ASIDE in service.log(), f"{service.name} should use the distro's provider:\n{service.log()}"
        assert "Overriding of current TracerProvider is not allowed" not in service.log()
