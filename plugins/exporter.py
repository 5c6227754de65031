"""`otlp_lean`: an OTLP/HTTP (protobuf) span exporter, chosen with `OTEL_TRACES_EXPORTER=otlp_lean` (an
`opentelemetry_traces_exporter` entry point in pyproject.toml). It reads the standard `OTEL_EXPORTER_OTLP_*`
variables (endpoint, headers, timeout, compression, certificates) as the stock `OTLPSpanExporter` does and
retries as the OTLP specification says (429, 502, 503, 504 and connection errors, exponential back-off with
jitter, within the timeout), with two changes, each measured in docs/bench.md:

1. **urllib3, not requests**: requests adds megabytes of imports to each traced service. Delete the transport
   half when the stock exporter takes urllib3 through a public setting.
2. **A hand-made protobuf encoder** (`encode_request`): the stock one builds a protobuf object for every span,
   attribute and value before serialising them, the largest part of a span's cost, paid on the batch worker's
   thread, which shares the GIL with the event loop. This one writes the same wire bytes directly
   (tests/unit/test_otlp_encoding.py decodes both with the stock protobuf classes and compares them, byte for
   byte). Delete it, and this module for the stock exporter (`OTEL_TRACES_EXPORTER=otlp` with
   `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`), when the stock encoder is as cheap, or at once if the test
   finds the outputs differ after an upgrade.
"""

from __future__ import annotations

import gzip
import logging
import os
import random
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import urllib3
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext
from opentelemetry.util.re import parse_env_headers

_logger = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")
"""The stock exporter's logger name: its failures are rate-limited like the rest of OpenTelemetry's
(plugins/logs.py)."""
_IS_REMOTE_KNOWN = 0x100  # SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = 0x200  # SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")
_DOUBLE = struct.Struct("<d")


_SMALL = [bytes([n]) for n in range(128)]


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64  # int64: two's complement, ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes, message): tag, length, payload."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@lru_cache(maxsize=1024)
def _key(key: str) -> bytes:
    # The attribute keys come from the code (a few dozen); their encoding is the same in every span.
    return _field(1, key.encode())


def _value(value: Any) -> bytes:  # noqa: PLR0911 - one return per AnyValue kind, in the stock encoder's order
    """An AnyValue, the kinds tried in the order of the stock `_encode_value`."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _field(1, value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _field(7, value)
    if isinstance(value, Sequence):
        return _field(5, b"".join(_field(1, _value(item)) for item in value))
    if isinstance(value, Mapping):
        return _field(6, b"".join(_field(1, _key(str(k)) + _field(2, _value(v))) for k, v in value.items()))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


_CACHED_VALUE_CHARS = 128
"""With 4096 entries, the cache holds well under 1 MB whatever the spans carry."""


@lru_cache(maxsize=4096)
def _repeated_attribute(number: int, key: str, kind: str, value: str | int) -> bytes:
    return _field(number, _key(key) + _field(2, _value(value)))


def _attributes(number: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    parts = []
    for key, value in attributes.items():
        kind = type(value)
        # Most values repeat (methods, routes, addresses, ports, event types): their encoding is kept. Only exact
        # str/int/bool are: 1 == 1.0 == True, and -0.0 == 0.0, would otherwise share an entry; and only short
        # strings, so that clients' values (a user agent may be 64 KB) cannot make the cache large.
        if (kind is str and len(value) <= _CACHED_VALUE_CHARS) or kind is int or kind is bool:
            parts.append(_repeated_attribute(number, key, kind.__name__, value))
        else:
            parts.append(_field(number, _key(key) + _field(2, _value(value))))
    return b"".join(parts)


def _flags(context: SpanContext | None) -> bytes:
    flags = _IS_REMOTE_KNOWN | (_IS_REMOTE if context is not None and context.is_remote else 0)
    return _FIXED32.pack(flags)


def _count(number: int, count: int) -> bytes:
    return _varint(number << 3) + _varint(count) if count else b""


def _string(number: int, text: str | None) -> bytes:
    return _field(number, text.encode()) if text else b""


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    if context is None:
        raise ValueError(f"span {span.name!r} has no context")
    parts = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
        _string(3, ",".join(f"{key}={value}" for key, value in context.trace_state.items())),
    ]
    if span.parent:
        parts.append(b"\x22\x08" + span.parent.span_id.to_bytes(8, "big"))
    parts.append(_string(5, span.name))
    parts.append(b"\x30" + _varint(span.kind.value + 1))  # the API's kinds start at INTERNAL = 0, OTLP's at 1
    if span.start_time:
        parts.append(b"\x39" + _FIXED64.pack(span.start_time))
    if span.end_time:
        parts.append(b"\x41" + _FIXED64.pack(span.end_time))
    parts.append(_attributes(9, span.attributes))
    parts.append(_count(10, span.dropped_attributes))
    for event in span.events:
        body = (b"\x09" + _FIXED64.pack(event.timestamp) if event.timestamp else b"") + _string(2, event.name)
        parts.append(_field(11, body + _attributes(3, event.attributes) + _count(4, event.dropped_attributes)))
    parts.append(_count(12, span.dropped_events))
    for link in span.links:
        body = b"\x0a\x10" + link.context.trace_id.to_bytes(16, "big")
        body += b"\x12\x08" + link.context.span_id.to_bytes(8, "big")
        body += _attributes(4, link.attributes) + _count(5, link.dropped_attributes) + b"\x35" + _flags(link.context)
        parts.append(_field(13, body))
    parts.append(_count(14, span.dropped_links))
    status = span.status
    parts.append(_field(15, _string(2, status.description) + _count(3, status.status_code.value)))
    parts.append(b"\x85\x01" + _flags(span.parent))  # field 16, fixed32
    return b"".join(parts)


@lru_cache(maxsize=64)
def _resource(resource: Resource) -> bytes:
    return _field(1, _attributes(1, resource.attributes))


@lru_cache(maxsize=64)
def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return _field(1, b"")
    return _field(1, _string(1, scope.name) + _string(2, scope.version) + _attributes(3, scope.attributes))


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """An ExportTraceServiceRequest holding `spans`, serialised: the bytes of the stock
    `encode_spans(spans).SerializePartialToString()`, spans grouped by resource then by scope in the order first
    seen, as it groups them."""
    grouped: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
    for span in spans:
        scope = span.instrumentation_scope or None
        grouped.setdefault(span.resource, {}).setdefault(scope, []).append(_field(2, _span(span)))
    out = []
    for resource, scopes in grouped.items():
        scope_spans = b"".join(
            _field(2, _scope(scope) + b"".join(encoded) + _string(3, scope.schema_url if scope else None))
            for scope, encoded in scopes.items()
        )
        out.append(_field(1, _resource(resource) + scope_spans + _string(3, resource.schema_url)))
    return b"".join(out)


def _setting(name: str, default: str = "") -> str:
    """OTEL_EXPORTER_OTLP_TRACES_<name>, else OTEL_EXPORTER_OTLP_<name>: the signal's own variable wins."""
    env = os.environ.get
    return env(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or env(f"OTEL_EXPORTER_OTLP_{name}") or default


def _endpoint() -> str:
    if endpoint := os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return endpoint  # the signal's endpoint is used as it is, path included
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
    return f"{base.removesuffix('/')}/v1/traces"


def _timeout() -> float:
    """Seconds for one export, retries included (the SDK's reading of the variable: seconds, default 10)."""
    raw = _setting("TIMEOUT", "10")
    try:
        return float(raw)
    except ValueError:
        _logger.warning("Invalid timeout value %r, using default of 10 seconds", raw)
        return 10.0


def _pool() -> urllib3.PoolManager:
    """Connections with the certificates the stock exporter would use (the same variables, same order)."""
    certificate = _setting("CLIENT_CERTIFICATE") or None
    return urllib3.PoolManager(
        num_pools=1,
        maxsize=1,  # one batch worker thread exports
        ca_certs=_setting("CERTIFICATE") or None,
        cert_file=certificate,
        key_file=(_setting("CLIENT_KEY") or None) if certificate else None,
    )


_RETRYABLE = frozenset({429, 502, 503, 504})
_MAX_BACKOFF = 32.0


class OTLPHTTPSpanExporter(SpanExporter):
    """OTLP/HTTP (protobuf) export of spans with `encode_request`, over urllib3, as the module says."""

    def __init__(self) -> None:
        self._endpoint = _endpoint()
        self._timeout = _timeout()
        self._gzip = _setting("COMPRESSION", "none").strip().lower() == "gzip"
        self._headers = {"content-type": "application/x-protobuf", "user-agent": "knative-tracing-otlp-lean"}
        self._headers.update(parse_env_headers(_setting("HEADERS"), liberal=True))
        if self._gzip:
            self._headers["content-encoding"] = "gzip"
        self._pool = _pool()
        self._shutdown = threading.Event()
        self.exported = 0
        """Spans the backend acknowledged: logged at shutdown, so `make bench` can compare it with what arrived."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown.is_set():
            return SpanExportResult.FAILURE
        try:
            body = encode_request(spans)
        except Exception:  # as the stock exporter: the batch is lost, and said so
            _logger.exception("Failed to encode span batch")
            return SpanExportResult.FAILURE
        result = self._post(gzip.compress(body) if self._gzip else body)
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
        return result

    def _post(self, body: bytes) -> SpanExportResult:
        deadline = time.monotonic() + self._timeout
        for attempt in range(64):
            remaining = deadline - time.monotonic()
            status: int | None = None
            try:
                reply = self._pool.request(
                    "POST",
                    self._endpoint,
                    body=body,
                    headers=self._headers,
                    timeout=max(remaining, 0.001),
                    retries=False,
                    preload_content=True,
                )
                status = reply.status
                if 200 <= status < 300:
                    return SpanExportResult.SUCCESS
                problem = f"HTTP {status}"
            except urllib3.exceptions.HTTPError as exc:
                problem = repr(exc)
            if status is not None and status not in _RETRYABLE:
                _logger.error("Failed to export span batch to %s: %s, not retryable", self._endpoint, problem)
                return SpanExportResult.FAILURE
            backoff = min(2**attempt, _MAX_BACKOFF) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not secrecy
            if time.monotonic() + backoff >= deadline or self._shutdown.wait(backoff):
                _logger.error(
                    "Failed to export span batch to %s: %s, giving up within the timeout", self._endpoint, problem
                )
                return SpanExportResult.FAILURE
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._shutdown.set()
        self._pool.clear()
        logging.getLogger("telemetry").info("telemetry: %d spans exported to %s", self.exported, self._endpoint)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # nothing is buffered here
