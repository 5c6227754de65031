"""A STAND-IN for Jaeger in the container test: Jaeger's image cannot be pulled here, so this takes its name.

It is not Jaeger. It does only what the compose stack and `make up` need from Jaeger: it takes OTLP/HTTP traces
on :4318 (`POST /v1/traces`, protobuf, what the services export) and answers the two query calls `make up` makes
on :16686, `GET /api/services` and `GET /api/traces/<trace id>`, in the JSON shape of Jaeger's HTTP query API
(what tools/jaeger.py reads). Spans are kept in memory. SIGTERM stops it at once, as `docker compose stop` asks.

It runs in an image built FROM one of the services' images (their venv has opentelemetry-proto), as
tests/containers/test_stack.py builds it; `python jaeger_standin.py` runs it on a host as well.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

OTLP_PORT = int(os.environ.get("STANDIN_OTLP_PORT", "4318"))
QUERY_PORT = int(os.environ.get("STANDIN_QUERY_PORT", "16686"))
# Jaeger's own setting for the address it listens on (docker-compose.yml sets it to 0.0.0.0).
HOST = os.environ.get("JAEGER_LISTEN_HOST", "127.0.0.1")
MAX_BODY = 16 * 1024 * 1024
"""Jaeger's OTLP receiver default limit; larger bodies are refused with 413 before they are read."""
KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return json.dumps([_value(v) for v in value.array_value.values])
    if which == "kvlist_value":
        return json.dumps({kv.key: _value(kv.value) for kv in value.kvlist_value.values})
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which) if which else None


def _tags(attributes: Any) -> list[dict[str, Any]]:
    tags = []
    for kv in attributes:
        assert isinstance(kv, KeyValue)
        value = _value(kv.value)
        kind = {bool: "bool", int: "int64", float: "float64"}.get(type(value), "string")
        tags.append({"key": kv.key, "type": kind, "value": value})
    return tags


class Store:
    """Jaeger-shaped spans by trace id, and each trace's processes (one per service), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._traces: dict[str, dict[str, Any]] = {}
        self._services: set[str] = set()

    def add(self, request: ExportTraceServiceRequest) -> dict[str, int]:
        """Keep the request's spans; returns how many each service sent."""
        counts: dict[str, int] = {}
        with self._lock:
            for resource_spans in request.resource_spans:
                resource = _tags(resource_spans.resource.attributes)
                service = next((str(t["value"]) for t in resource if t["key"] == "service.name"), "unknown")
                self._services.add(service)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self._add_span(span, service, resource)
                        counts[service] = counts.get(service, 0) + 1
        return counts

    def _add_span(self, span: Any, service: str, resource: list[dict[str, Any]]) -> None:
        trace_id = span.trace_id.hex()
        trace = self._traces.setdefault(trace_id, {"traceID": trace_id, "spans": [], "processes": {}})
        process_id = next((p for p, v in trace["processes"].items() if v["serviceName"] == service), None)
        if process_id is None:
            process_id = f"p{len(trace['processes']) + 1}"
            trace["processes"][process_id] = {"serviceName": service, "tags": resource}
        tags = _tags(span.attributes)
        tags.append({"key": "span.kind", "type": "string", "value": KINDS.get(span.kind, "internal")})
        if span.status.code == 2:
            tags += [
                {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                {"key": "error", "type": "bool", "value": True},
            ]
        references = [
            {"refType": "FOLLOWS_FROM", "traceID": link.trace_id.hex(), "spanID": link.span_id.hex()}
            for link in span.links
        ]
        if span.parent_span_id:
            references.insert(0, {"refType": "CHILD_OF", "traceID": trace_id, "spanID": span.parent_span_id.hex()})
        trace["spans"].append(
            {
                "traceID": trace_id,
                "spanID": span.span_id.hex(),
                "operationName": span.name,
                "references": references,
                "startTime": span.start_time_unix_nano // 1000,
                "duration": (span.end_time_unix_nano - span.start_time_unix_nano) // 1000,
                "tags": tags,
                "logs": [],
                "processID": process_id,
                "warnings": None,
            }
        )

    def services(self) -> list[str]:
        with self._lock:
            return sorted(self._services)

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        with self._lock:
            trace = self._traces.get(trace_id.lower().rjust(32, "0"))
            return json.loads(json.dumps(trace)) if trace else None


def _handler(store: Store, port: int) -> type[BaseHTTPRequestHandler]:
    """The handler of one of the two ports, OTLP_PORT or QUERY_PORT: each answers only its own calls."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, document: dict[str, Any]) -> None:
            self._send(status, json.dumps(document).encode())

        def do_POST(self) -> None:
            if port != OTLP_PORT or self.path != "/v1/traces":
                self._json(404, {"error": f"no OTLP endpoint at {self.path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._json(413, {"error": f"body over {MAX_BODY} bytes"})
                return
            request = ExportTraceServiceRequest()
            try:
                request.ParseFromString(self.rfile.read(length))
            except Exception as exc:
                self._json(400, {"error": f"not an OTLP protobuf ExportTraceServiceRequest: {exc}"})
                return
            services = store.add(request)
            # One line per export: `docker compose logs jaeger` shows who flushed what, and when.
            print(f"{time.strftime('%H:%M:%S')} OTLP export: {services}", flush=True)
            self._send(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

        def do_GET(self) -> None:
            if port != QUERY_PORT:
                self._json(404, {"error": "the query API is on the UI port"})
            elif self.path == "/api/services":
                services = store.services()
                self._json(200, {"data": services, "total": len(services), "limit": 0, "offset": 0, "errors": None})
            elif self.path.startswith("/api/traces/"):
                trace = store.trace(self.path.removeprefix("/api/traces/").split("?")[0])
                if trace is None:
                    self._json(404, {"data": None, "errors": [{"code": 404, "msg": "trace not found"}]})
                else:
                    self._json(200, {"data": [trace], "total": 0, "limit": 0, "offset": 0, "errors": None})
            else:
                self._json(404, {"error": f"the stand-in answers only /api/services and /api/traces/<id>: {self.path}"})

    return Handler


def main() -> None:
    store = Store()
    servers = [ThreadingHTTPServer((HOST, port), _handler(store, port)) for port in (OTLP_PORT, QUERY_PORT)]
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    stopped = threading.Event()
    # As PID 1 in its container, SIGTERM does nothing unless handled.
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    for server in servers:
        server.shutdown()


if __name__ == "__main__":
    main()
