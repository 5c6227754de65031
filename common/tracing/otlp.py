"""The OTLP/HTTP span exporter the services use, built from the exporter package's own parts: its HTTP client
(`_OTLPHTTPClient`: retries, back-off, deadline, compression) and its readers of the standard
`OTEL_EXPORTER_OTLP_*` variables (endpoint, headers, timeout, compression, certificates), so it behaves as the
stock `OTLPSpanExporter` does, with two changes:

1. **The package's urllib3 transport, not requests**: it ships both, and requests adds 3.4 MB of imports to each
   traced service (RSS before and after the import); the protobuf classes, unused here, 2.5 MB more. Delete
   `_transport` when the stock exporter takes urllib3 by default or lets a setting choose.
2. **A hand-made protobuf encoder** (`encode_request`), because the stock one builds a protobuf object for every
   span, attribute and value before serialising them: 36-56 us a span on this VM (`encode_spans(...)
   .SerializePartialToString()` over 512 spans of the demo), the largest part of a span's cost, paid nine times
   a request on the batch worker's thread, which shares the GIL with the event loop. This one writes the same
   wire bytes directly (tests/unit/test_otlp_encoding.py decodes both with the stock protobuf classes and
   compares them, byte for byte, over generated spans); 15 us a span instead of 47 measured side by side, most
   of it by keeping the encoding of attribute values that repeat. Delete it, and this module for the stock
   `OTLPSpanExporter`, when the stock encoder costs less than 20 us a span (docs/bench.md), or at once if the
   test finds the outputs differ after an upgrade.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
from opentelemetry.exporter.otlp.common.http import _OTLPHTTPClient
from opentelemetry.exporter.otlp.proto.http._common import (
    _resolve_compression,
    _resolve_endpoint,
    _resolve_headers,
    _resolve_timeout,
)
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

_logger = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")
"""The stock exporter's logger name: its failures are rate-limited like the rest of OpenTelemetry's
(common/service/logs.py)."""
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


def _transport() -> Urllib3HTTPTransport:
    """urllib3, with the certificates the stock exporter would give requests (the same variables, same order)."""
    env = os.environ.get
    verify: bool | str = env(OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE) or env(OTEL_EXPORTER_OTLP_CERTIFICATE) or True
    key = env(OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY) or env(OTEL_EXPORTER_OTLP_CLIENT_KEY)
    certificate = env(OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE) or env(OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)
    cert = (certificate, key) if certificate and key else certificate
    return Urllib3HTTPTransport(verify=verify, cert=cert)


class OTLPHTTPSpanExporter(SpanExporter):
    """OTLP/HTTP (protobuf) export of spans: the exporter package's own HTTP client (retries with back-off, the
    deadline of OTEL_EXPORTER_OTLP_TIMEOUT, compression) and settings readers, over its urllib3 transport, with
    `encode_request` in place of the protobuf classes."""

    def __init__(self) -> None:
        self._client = _OTLPHTTPClient(
            transport=_transport(),
            endpoint=_resolve_endpoint(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "v1/traces"),
            kind="spans",
            timeout=_resolve_timeout(OTEL_EXPORTER_OTLP_TRACES_TIMEOUT),
            compression=_resolve_compression(OTEL_EXPORTER_OTLP_TRACES_COMPRESSION),
            headers=_resolve_headers(None, OTEL_EXPORTER_OTLP_TRACES_HEADERS),
            logger=_logger,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            serialized = encode_request(spans)
        except Exception:  # as the stock exporter: the batch is lost, and said so
            _logger.exception("Failed to encode span batch")
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if self._client.export(serialized).success else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._client.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # nothing is buffered here
