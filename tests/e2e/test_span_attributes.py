"""The SERVER spans (FastAPI's own telemetry) and CLIENT spans (first/app.py, broker/client_span.py): named and
described by the HTTP semantic conventions, none for health checks, errors marked by the status code."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from tests.support import complete_trace, poll_until, running
from tools.otlp_receiver import Receiver
from tools.spans import Span
from tools.stack import Stack, free_port


def _server(spans: list[Span], service: str) -> Span:
    found = [s for s in spans if s.service == service and s.kind == "SERVER"]
    assert len(found) == 1, found
    return found[0]


def test_server_and_client_spans_follow_http_semconv(stack: Stack, receiver: Receiver) -> None:
    # A health check first: the batch that carries the traced request's spans would carry its span too.
    assert httpx.get(stack.url("first") + "/healthz", timeout=5).status_code == 200
    reply = httpx.get(stack.url("first") + "/", timeout=10)
    assert reply.status_code == 200, reply.text
    spans = complete_trace(receiver, reply.json()["trace_id"])

    first = _server(spans, "first")
    assert first.name == "GET /"
    assert first.attributes["http.request.method"] == "GET"
    assert first.attributes["http.route"] == "/"
    assert first.attributes["url.path"] == "/"
    assert first.attributes["http.response.status_code"] == 200
    assert first.attributes["server.port"] == stack.ports["first"]
    assert first.attributes["server.address"] == "127.0.0.1"
    assert first.attributes["url.scheme"] == "http"
    broker = _server(spans, "broker")
    assert broker.name == "POST /{namespace}/{name}"
    assert broker.attributes["url.path"] == "/default/default"
    assert broker.attributes["http.response.status_code"] == 202

    clients = {s.service: s for s in spans if s.kind == "CLIENT"}
    assert set(clients) == {"first", "broker"}
    assert clients["first"].attributes["url.full"] == f"{stack.url('broker')}/default/default"
    assert clients["first"].attributes["http.response.status_code"] == 202
    assert clients["broker"].attributes["server.port"] == stack.ports["second"]
    assert clients["broker"].attributes["http.response.status_code"] == 204
    assert {s.status for s in spans} == {"UNSET"}

    assert not [s for s in receiver.spans() if s.attributes.get("url.path") == "/healthz"]


def test_client_error_is_recorded_without_marking_the_server_span(stack: Stack, receiver: Receiver) -> None:
    """A 4xx is the caller's mistake: the SERVER span records the status and stays UNSET (semconv)."""
    reply = httpx.post(stack.url("broker") + "/default/no-such-broker", content=b"x", timeout=5)
    assert reply.status_code == 404

    def refused() -> list[Span]:
        return [s for s in receiver.spans() if s.attributes.get("url.path") == "/default/no-such-broker"]

    span = poll_until(refused, 10, "the broker's SERVER span for the 404")[0]
    assert span.kind == "SERVER"
    assert span.attributes["http.response.status_code"] == 404
    assert span.status == "UNSET"


def test_unreachable_broker_marks_server_and_client_spans_as_errors(receiver: Receiver, tmp_path: Path) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "K_SINK": f"http://127.0.0.1:{free_port()}/default/default",  # nothing listens there
    }
    trace_id = secrets.token_hex(16)
    with running("first", env, tmp_path) as first:
        reply = httpx.get(first.url + "/", headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
        assert reply.status_code == 503, reply.text
        spans = poll_until(lambda: found if len(found := receiver.spans(trace_id)) >= 3 else None, 10, "3 spans")
    by_kind = {s.kind: s for s in spans}
    assert by_kind["SERVER"].status == "ERROR"
    assert by_kind["SERVER"].attributes["http.response.status_code"] == 503
    assert by_kind["CLIENT"].status == "ERROR"
    assert by_kind["CLIENT"].attributes["error.type"] == "ConnectError"
    assert by_kind["PRODUCER"].status == "ERROR"
