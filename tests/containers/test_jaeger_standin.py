"""The Jaeger stand-in of the container test speaks what it stands in for: the OpenTelemetry SDK's OTLP/HTTP
exporter sends to it, and `make up`'s reader (tools/jaeger.py) gets the trace back with its shape intact."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from tools.jaeger import fetch_trace
from tools.stack import free_port, wait_healthy

STANDIN = Path(__file__).with_name("jaeger_standin.py")


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(OTLP endpoint, query URL) of the stand-in running as a process of its own."""
    otlp, query = free_port(), free_port()
    env = {"STANDIN_OTLP_PORT": str(otlp), "STANDIN_QUERY_PORT": str(query), "PATH": "/usr/bin:/bin"}
    log = (tmp_path_factory.mktemp("standin") / "standin.log").open("wb")
    process = subprocess.Popen([sys.executable, str(STANDIN)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{query}/api/services", 30, process)
        yield f"http://127.0.0.1:{otlp}", f"http://127.0.0.1:{query}"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0, "the stand-in must stop on SIGTERM, as compose stops it"


def _export(endpoint: str, service: str) -> str:
    """A SERVER span with a failed CLIENT child, sent by the SDK's own OTLP/HTTP exporter; returns the trace id."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    tracer = provider.get_tracer("tests")
    root = tracer.start_span("GET /", kind=SpanKind.SERVER)
    child = tracer.start_span("POST", set_span_in_context(root), kind=SpanKind.CLIENT, attributes={"http.status": 503})
    child.set_status(Status(StatusCode.ERROR))
    child.end()
    root.end()
    provider.shutdown()
    return f"{root.get_span_context().trace_id:032x}"


def test_a_trace_exported_over_otlp_comes_back_from_the_query_api(standin: tuple[str, str]) -> None:
    endpoint, query = standin
    trace_id = _export(endpoint, "first")
    spans = {s.name: s for s in fetch_trace(query, trace_id)}
    assert set(spans) == {"GET /", "POST"}
    assert spans["POST"].parent_id == spans["GET /"].span_id and spans["GET /"].parent_id is None
    assert (spans["GET /"].kind, spans["POST"].kind) == ("SERVER", "CLIENT")
    assert spans["POST"].status == "ERROR" and spans["POST"].attributes["http.status"] == 503
    assert {s.service for s in spans.values()} == {"first"}
    assert spans["POST"].duration_ms >= 0
    assert "first" in httpx.get(f"{query}/api/services", timeout=5).json()["data"]


def test_an_unknown_trace_is_not_found_and_each_port_answers_only_its_calls(standin: tuple[str, str]) -> None:
    endpoint, query = standin
    assert fetch_trace(query, "0" * 31 + "1") == []
    assert httpx.get(f"{endpoint}/api/services", timeout=5).status_code == 404
    assert httpx.post(f"{query}/v1/traces", content=b"", timeout=5).status_code == 404
    assert httpx.post(f"{endpoint}/v1/traces", content=b"not protobuf \xff", timeout=5).status_code == 400
