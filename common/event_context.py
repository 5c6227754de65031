"""Trace context that travels inside the event, and the switch that sends an event with no context at all.

The CloudEvents Distributed Tracing extension carries the producer's W3C `traceparent`/`tracestate` as event
attributes (`ce-traceparent` in binary mode), which no intermediary rewrites, unlike the HTTP headers each hop
replaces with its own. first writes it when `EVENT_TRACE_EXTENSION=true`. second reads it the way the
OpenTelemetry messaging conventions describe for a push consumer:

- the transport headers carry a context (the normal case): the CONSUMER span stays a child of the HTTP SERVER
  span and links to the producer's context, when that is not already its parent;
- the transport headers carry none (a hop that does not propagate): the producer's context becomes the
  CONSUMER span's parent, so the event rejoins the producer's trace, and the span links to the SERVER span
  (the ambient context) so the HTTP request stays reachable.

`PROPAGATE_CONTEXT=false` is the article's lesson done wrong on purpose: first sends the event with no trace
headers and no extension, and the trace breaks in two at the broker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext
from starlette.datastructures import Headers

from common.cloudevent import Event
from common.propagation import HEADERS_GETTER, W3CTraceContext

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# The same spec-checked parser as the transport headers get (common.propagation), not the stock one.
_W3C = W3CTraceContext()


def with_trace_extension(event: Event) -> Event:
    """`event` with the current span's context as `traceparent` (and `tracestate` when there is one)."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    for name in (TRACEPARENT, TRACESTATE):
        if name in carrier:
            event = event.with_attribute(name, carrier[name])
    return event


@contextmanager
def sending(propagate_context: bool) -> Iterator[None]:
    """Around the HTTP call that sends an event: as it is, or with no trace context when `propagate_context`
    is off (the httpx instrumentation then neither starts a CLIENT span nor writes trace headers)."""
    if propagate_context:
        yield
        return
    with suppress_http_instrumentation():
        yield


def _valid(extracted: otel_context.Context) -> SpanContext | None:
    span_context = trace.get_current_span(extracted).get_span_context()
    return span_context if span_context.is_valid else None


def creation_context(event: Event) -> SpanContext | None:
    """The producer's context from the event's Distributed Tracing extension; None when absent or invalid."""
    traceparent = event.attributes.get(TRACEPARENT)
    if traceparent is None:
        return None
    carrier = {TRACEPARENT: str(traceparent)}
    if TRACESTATE in event.attributes:
        carrier[TRACESTATE] = str(event.attributes[TRACESTATE])
    found = _valid(_W3C.extract(carrier))
    if found is None:
        log.warning("event %s: extension traceparent %r is not a valid W3C traceparent; ignored", event.id, traceparent)
    return found


def consumer_parent(event: Event, headers: Headers) -> tuple[otel_context.Context | None, list[Link]]:
    """The parent context (None: the current one) and the links for the CONSUMER span that processes `event`,
    which arrived with the HTTP `headers`."""
    creation = creation_context(event)
    if creation is None:
        return None, []
    transport = _valid(propagate.extract(headers, getter=HEADERS_GETTER))
    ambient = trace.get_current_span().get_span_context()
    if transport is None:
        # The hop before us dropped the headers: continue the producer's trace from the event itself.
        links = [Link(ambient)] if ambient.is_valid else []
        return trace.set_span_in_context(NonRecordingSpan(creation)), links
    if (transport.trace_id, transport.span_id) == (creation.trace_id, creation.span_id):
        return None, []
    return None, [Link(creation)]
