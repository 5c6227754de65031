"""A small OTLP trace receiver (HTTP/protobuf on /v1/traces, and optionally gRPC) that keeps spans in memory.

`make run`, the tests and the bench use it instead of a collector so that spans really travel over OTLP.
Run alone: `python -m tools.otlp_receiver --port 4318`; `GET /spans?trace_id=...` returns what it holds as JSON.
"""

from __future__ import annotations

import argparse
import json
import threading
import zlib
from collections.abc import Callable
from concurrent import futures
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tools.http_server import HttpServer
from tools.spans import KINDS, Span

_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}
MAX_BODY_BYTES = 64 * 1024 * 1024
"""An export request is at most this many bytes, compressed or not (the SDK sends batches of 512 spans)."""


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


def decode(request: ExportTraceServiceRequest) -> list[Span]:
    spans: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        service = str(resource.get("service.name", "unknown"))
        for scope_spans in resource_spans.scope_spans:
            # The instrumentation scope as Jaeger shows it (the otel.scope.name tag), so a hop's scope
            # (tools/hops.py) is checked alike on spans from this receiver and from Jaeger.
            scope = {"otel.scope.name": scope_spans.scope.name} if scope_spans.scope.name else {}
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        # OTLP numbers kinds from 1 (INTERNAL); 0 is unspecified.
                        kind=KINDS[max(span.kind - 1, 0)],
                        service=service,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes={**{kv.key: _value(kv.value) for kv in span.attributes}, **scope},
                        links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                        status=_STATUS.get(span.status.code, "UNSET"),
                    )
                )
    return spans


class Receiver:
    """Holds received spans; thread-safe. `start()` serves OTLP/HTTP (and gRPC when `grpc_port` is given)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, grpc_port: int | None = None) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._spans: list[Span] = []
        self.requests = 0
        self.gzip_requests = 0
        """Of `requests`, those whose body came gzip-compressed."""
        self._http = HttpServer(_handler(self), host, port)
        self._grpc: Any = None
        self.grpc_port: int | None = None
        if grpc_port is not None:
            self._grpc, self.grpc_port = _grpc_server(self, host, grpc_port)

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        self._http.start("otlp-http")
        if self._grpc is not None:
            self._grpc.start()
        return self

    def stop(self) -> None:
        self._http.stop()
        if self._grpc is not None:
            self._grpc.stop(grace=None)

    def add(self, spans: list[Span], *, gzip: bool = False) -> None:
        with self._changed:
            self._spans.extend(spans)
            self.requests += 1
            self.gzip_requests += gzip
            self._changed.notify_all()

    def spans(self, trace_id: str | None = None) -> list[Span]:
        with self._lock:
            return [s for s in self._spans if trace_id is None or s.trace_id == trace_id]

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def wait_for(self, predicate: Callable[[list[Span]], bool], timeout: float) -> list[Span]:
        """Block until `predicate(all spans)` holds or `timeout` passes; return the spans either way."""
        with self._changed:
            self._changed.wait_for(lambda: predicate(self._spans), timeout=timeout)
            return list(self._spans)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            declared = self.headers.get("content-length") or "0"
            if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
                self.close_connection = True
                self._reply(413, f"a body is at most {MAX_BODY_BYTES} bytes".encode(), "text/plain")
                return
            body = self.rfile.read(int(declared))
            if urlsplit(self.path).path != "/v1/traces":
                self._reply(404, b"", "text/plain")
                return
            if "json" in (self.headers.get("content-type") or ""):
                self._reply(415, b"this receiver takes OTLP/HTTP protobuf", "text/plain")
                return
            encoding = (self.headers.get("content-encoding") or "identity").strip().lower()
            if encoding not in ("identity", "gzip"):
                self._reply(
                    415, f"content-encoding {encoding!r}: this receiver takes gzip or none".encode(), "text/plain"
                )
                return
            try:
                # OTEL_EXPORTER_OTLP_COMPRESSION=gzip: the SDK's exporters compress the whole body.
                body = _gunzip(body) if encoding == "gzip" else body
            except ValueError as exc:
                self._reply(400, str(exc).encode(), "text/plain")
                return
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            receiver.add(decode(request), gzip=encoding == "gzip")
            self._reply(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/spans":
                self._reply(404, b"", "text/plain")
                return
            trace_id = parse_qs(url.query).get("trace_id", [None])[0]
            body = json.dumps([asdict(s) for s in receiver.spans(trace_id)]).encode()
            self._reply(200, body, "application/json")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: one line per export would bury the demo's own logs."""

    return Handler


def _gunzip(body: bytes) -> bytes:
    """A gzip body, decompressed to at most MAX_BODY_BYTES (a small body can inflate a thousandfold)."""
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflate.decompress(body, MAX_BODY_BYTES)
    except zlib.error as exc:
        raise ValueError(f"the body is not valid gzip: {exc}") from None
    if inflate.unconsumed_tail:
        raise ValueError(f"the body inflates to more than {MAX_BODY_BYTES} bytes")
    if not inflate.eof:
        raise ValueError("the gzip body is cut short")
    return data


def _grpc_server(receiver: Receiver, host: str, port: int) -> tuple[Any, int]:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
            receiver.add(decode(request))
            return ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"{host}:{port}")
    return server, bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    receiver = Receiver(args.host, args.port).start()
    print(f"OTLP/HTTP receiver on {receiver.endpoint}/v1/traces")
    threading.Event().wait()


if __name__ == "__main__":
    main()
