"""The OTLP receiver takes what the SDK's exporters send, compressed (OTEL_EXPORTER_OTLP_COMPRESSION=gzip) or
not, and refuses a body it cannot read with a status that says why, never a dropped connection."""

from __future__ import annotations

import gzip
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support import poll_until
from tools import otlp_receiver
from tools.otlp_receiver import Receiver
from tools.spans import Span
from tools.stack import free_port, running_all, start_service

PROTOBUF = {"content-type": "application/x-protobuf"}


@pytest.fixture
def own_receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def _one_span_request(trace_id: str) -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = bytes.fromhex(trace_id), secrets.token_bytes(8), "gzipped"
    return bytes(request.SerializeToString())


def test_a_gzip_body_is_decoded(own_receiver: Receiver) -> None:
    trace_id = secrets.token_hex(16)
    reply = httpx.post(
        own_receiver.endpoint + "/v1/traces",
        content=gzip.compress(_one_span_request(trace_id)),
        headers={**PROTOBUF, "content-encoding": "gzip"},
        timeout=5,
    )
    assert reply.status_code == 200, reply.text
    assert [s.name for s in own_receiver.spans(trace_id)] == ["gzipped"]
    assert own_receiver.gzip_requests == 1


def test_the_scope_is_kept_as_jaeger_shows_it(own_receiver: Receiver) -> None:
    """tools/hops.py tells the queue-proxy's spans from the workload's by scope: the receiver must keep it."""
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    scope_spans.scope.name = "knative.dev/serving/pkg/queue"
    span = scope_spans.spans.add()
    trace_id = secrets.token_hex(16)
    span.trace_id, span.span_id, span.name = bytes.fromhex(trace_id), secrets.token_bytes(8), "kn.queueproxy.proxy"
    reply = httpx.post(own_receiver.endpoint + "/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
    assert reply.status_code == 200, reply.text
    [received] = own_receiver.spans(trace_id)
    assert received.attributes["otel.scope.name"] == "knative.dev/serving/pkg/queue"


UNREADABLE = {
    "not gzip": (b"not gzip at all", "gzip", 400, "not valid gzip"),
    "cut short": (gzip.compress(b"x" * 10_000)[:20], "gzip", 400, "cut short"),
    "inflates past the cap": (gzip.compress(b"x" * 10_000), "gzip", 400, "inflates to more than 1000 bytes"),
    "unknown encoding": (b"x", "br", 415, "takes gzip or none"),
}


@pytest.mark.parametrize("case", UNREADABLE)
def test_an_unreadable_body_is_answered(own_receiver: Receiver, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    body, encoding, status, says = UNREADABLE[case]
    monkeypatch.setattr(otlp_receiver, "MAX_BODY_BYTES", 1000)
    headers = {**PROTOBUF, "content-encoding": encoding}
    reply = httpx.post(own_receiver.endpoint + "/v1/traces", content=body, headers=headers, timeout=5)
    assert (reply.status_code, says in reply.text) == (status, True), reply.text
    assert own_receiver.spans() == []


def test_a_service_exporting_with_gzip_is_received(own_receiver: Receiver, tmp_path: Path) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": own_receiver.endpoint,
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    second = start_service("second", free_port(), env, tmp_path / "second.log")
    with running_all({"second": second}):
        event = {"ce-id": "gzip-1", "ce-source": "test", "ce-specversion": "1.0", "ce-type": "t"}
        assert httpx.post(second.url + "/", headers=event, content=b"x", timeout=10).status_code == 204

        def arrived() -> list[Span] | None:
            spans = [s for s in own_receiver.spans() if s.attributes.get("cloudevents.event_id") == "gzip-1"]
            return spans or None

        poll_until(arrived, 15, "second's spans, exported with gzip")
    assert own_receiver.gzip_requests >= 1, "the exporter compressed its requests"
    assert own_receiver.gzip_requests == own_receiver.requests


def test_the_relay_passes_each_export_request_on_as_it_came() -> None:
    """What make run does with OTEL_EXPORTER_OTLP_ENDPOINT set: the body goes on unchanged, gzip and all."""
    backend = Receiver().start()
    front = Receiver(relay=otlp_receiver.Relay(f"{backend.endpoint}/v1/traces")).start()
    try:
        trace_id = secrets.token_hex(16)
        reply = httpx.post(
            front.endpoint + "/v1/traces",
            content=gzip.compress(_one_span_request(trace_id)),
            headers={**PROTOBUF, "content-encoding": "gzip"},
            timeout=5,
        )
        assert reply.status_code == 200, reply.text
        spans = backend.wait_for(bool, timeout=10)
        assert [(s.trace_id, s.name) for s in spans] == [(trace_id, "gzipped")]
        assert backend.gzip_requests == 1, "passed on compressed, as it came"
    finally:
        front.stop()
        backend.stop()
    assert front.relay is not None and (front.relay.sent, front.relay.failed) == (1, 0)


RELAY_SETTINGS = {
    "nothing set": ({}, None),
    "the base endpoint gets the signal's path": (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"},
        "http://127.0.0.1:4318/v1/traces",
    ),
    "the traces endpoint is used as it is, and wins": (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b/otlp"},
        "https://b/otlp",
    ),
}


@pytest.mark.parametrize("case", RELAY_SETTINGS)
def test_the_relay_follows_the_otlp_exporter_settings(case: str) -> None:
    environ, url = RELAY_SETTINGS[case]
    relay = otlp_receiver.Relay.from_environment(environ)
    try:
        assert (relay.url if relay else None) == url
    finally:
        if relay is not None:
            relay.close()


REFUSED = {
    "grpc": ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: make run passes spans on"),
    "not a URL": ({"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"}, "is not an http:// or https:// URL"),
    "a malformed header": ({"OTEL_EXPORTER_OTLP_HEADERS": "authorization"}, "OTEL_EXPORTER_OTLP_HEADERS: each entry"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_settings_the_relay_cannot_follow_are_named(case: str) -> None:
    extra, message = REFUSED[case]
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", **extra}
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        otlp_receiver.Relay.from_environment(environ)
    if case == "a malformed header":
        assert "authorization" not in str(raised.value), "a header entry may hold a credential: never shown"
