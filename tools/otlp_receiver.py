"""A small OTLP trace receiver (HTTP/protobuf on /v1/traces, and optionally gRPC) that keeps spans in memory.

`make run`, the tests and the bench use it instead of a collector so that spans really travel over OTLP.
Run alone: `python -m tools.otlp_receiver --port 4318`; `GET /spans?trace_id=...` returns what it holds as JSON.
With a Relay it also sends every export request on to another OTLP/HTTP endpoint: how `make run` reaches the
user's own backend (Jaeger, a Collector) named by the standard OTEL_EXPORTER_OTLP_* settings.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import zlib
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
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

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, grpc_port: int | None = None, relay: Relay | None = None
    ) -> None:
        self.relay = relay
        """Where each export request also goes, unchanged (make run's user backend); None: nowhere."""
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
        if self.relay is not None:
            self.relay.close()

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
            body = raw = self.rfile.read(int(declared))
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
            if receiver.relay is not None:
                receiver.relay.send(raw, encoding)
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


ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
RELAY_TIMEOUT_S = 10.0
"""The OTLP exporters' default timeout (OTEL_EXPORTER_OTLP_TIMEOUT), for each relayed request."""


class Relay:
    """Sends each export request the receiver took on to another OTLP/HTTP endpoint as it came (protobuf, gzip or
    not), from a thread of its own: the services' exporters get their answer at once, and a slow or absent backend
    costs only its own copy of the spans, never the receiver's.

    Hand-made (about 60 lines) because what does this elsewhere, a Collector's otlp receiver and otlphttp
    exporter, is a separate binary `make run` would have to download; delete this when make run starts one.
    """

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, setting: str = "") -> None:
        self.url = url
        self.setting = setting
        """The environment variable `url` came from, to name it to people."""
        self._client = httpx.Client(headers={"content-type": "application/x-protobuf", **(headers or {})})
        self._queue: queue.Queue[tuple[bytes, str] | None] = queue.Queue()
        self.sent = 0
        self.failed = 0
        self.first_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="otlp-relay", daemon=True)
        self._thread.start()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Relay | None:
        """The backend the standard settings name (the OTLP exporter spec's rules), or None when none is set.
        Raises ValueError naming the setting to change when they ask for what this relay cannot do."""
        protocol_key = next(
            (k for k in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL") if environ.get(k)), None
        )
        if environ.get(TRACES_ENDPOINT):
            key, url = TRACES_ENDPOINT, environ[TRACES_ENDPOINT]
        elif environ.get(ENDPOINT):
            # The spec: the signal's path is appended to the base endpoint.
            key, url = ENDPOINT, environ[ENDPOINT].rstrip("/") + "/v1/traces"
        else:
            return None
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise ValueError(f"{key}={environ[key]} is not an http:// or https:// URL (e.g. http://127.0.0.1:4318)")
        if protocol_key and environ[protocol_key] not in ("http/protobuf", "http/json"):
            raise ValueError(
                f"{protocol_key}={environ[protocol_key]}: make run passes spans on over OTLP/HTTP only. Unset it and "
                f"point {key} at the backend's OTLP/HTTP port (4318 on Jaeger and the Collector)"
            )
        headers_key = next(
            (k for k in ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS") if environ.get(k)), None
        )
        return cls(url, _headers(headers_key, environ[headers_key]) if headers_key else None, key)

    def send(self, body: bytes, content_encoding: str) -> None:
        self._queue.put((body, content_encoding))

    def close(self, timeout: float = RELAY_TIMEOUT_S) -> None:
        """Send what is queued (bounded by `timeout`), then stop."""
        self._queue.put(None)
        self._thread.join(timeout)
        self._client.close()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            body, encoding = item
            headers = {"content-encoding": encoding} if encoding != "identity" else {}
            try:
                reply = self._client.post(self.url, content=body, headers=headers, timeout=RELAY_TIMEOUT_S)
                error = None if reply.is_success else f"it answered {reply.status_code} {reply.text[:200]!r}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if error is None:
                self.sent += 1
                continue
            self.failed += 1
            if self.first_error is None:
                self.first_error = error
                # Once, not per batch: the demo goes on, with its own receiver's copy of every span.
                print(f"warning: spans not passed on to {self.url}: {error}", file=sys.stderr, flush=True)


def _headers(key: str, value: str) -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_HEADERS' format: `name=value` pairs joined by commas, values percent-encoded."""
    headers: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in value.split(","))):
        name, sep, encoded = pair.partition("=")
        if not sep or not name.strip():
            # The value may hold a credential: only the header's position is named.
            raise ValueError(f"{key}: each entry must be name=value (entry {len(headers) + 1} is not)")
        headers[name.strip()] = unquote(encoded.strip())
    return headers


def _grpc_server(receiver: Receiver, host: str, port: int) -> tuple[Any, int]:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
            receiver.add(decode(request))
            if receiver.relay is not None:
                receiver.relay.send(request.SerializeToString(), "identity")
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
