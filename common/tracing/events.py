"""Event spans: PRODUCER in first, CONSUMER in second, and the trace context that travels inside the event.

Span attributes follow the OpenTelemetry CloudEvents and messaging conventions. The `{destination}` in
`send {destination}` / `process {destination}` is the event type: Knative routes by type (the Trigger filters
on it), it is low-cardinality, and both producer and consumer know it.

The CloudEvents Distributed Tracing extension carries the producer's W3C `traceparent`/`tracestate` as event
attributes (`ce-traceparent` in binary mode), which no intermediary rewrites, unlike the HTTP headers each hop
replaces with its own. first writes it when `EVENT_TRACE_EXTENSION=true`. second reads it the way the
OpenTelemetry messaging conventions describe for a push consumer:

- the request carried a context (the normal case): the CONSUMER span stays a child of the HTTP SERVER span
  and links to the producer's context, when that is not already its parent;
- the request carried none (a hop that does not propagate): the producer's context becomes the CONSUMER span's
  parent, so the event rejoins the producer's trace, and the span links to the SERVER span so the HTTP request
  stays reachable.

`PROPAGATE_CONTEXT=false` is the article's lesson done wrong on purpose: first sends the event with no trace
headers and no extension, and the trace breaks in two at the broker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext
from opentelemetry.util.types import Attributes

from common.wire.cloudevents import Event
from common.wire.w3c import TRACEPARENT, TRACESTATE, W3CTraceContext

log = logging.getLogger(__name__)

MESSAGING_SYSTEM = "knative"
# The same spec-checked parser as the transport headers get (common/wire/w3c.py), not the stock one.
_W3C = W3CTraceContext()


def event_attributes(event: Event, destination: str, operation: str | None = None) -> Attributes:
    """The attributes of a span about `event` on its way to `destination`; `operation` (send, process) for the
    PRODUCER and CONSUMER spans."""
    attributes: dict[str, str] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.destination.name": destination,
        "cloudevents.event_id": event.id,
        "cloudevents.event_source": event.source,
        "cloudevents.event_type": event.type,
    }
    if operation is not None:
        attributes["messaging.operation.name"] = operation
        attributes["messaging.operation.type"] = operation
        attributes["messaging.message.id"] = event.id
        attributes["cloudevents.event_spec_version"] = str(event.attributes["specversion"])
    if event.subject is not None:
        attributes["cloudevents.event_subject"] = event.subject
    return attributes


def trace_extension() -> dict[str, str]:
    """The current span's context as the Distributed Tracing extension's attributes: `traceparent`, and
    `tracestate` when there is one."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier


@contextmanager
def sending(propagate_context: bool) -> Iterator[None]:
    """Around the HTTP call that sends an event: as it is, or with no trace context when `propagate_context`
    is off (no CLIENT span, and under opentelemetry-instrument the httpx instrumentation writes no headers)."""
    if propagate_context:
        yield
        return
    with suppress_http_instrumentation():
        yield


def creation_context(event: Event) -> SpanContext | None:
    """The producer's context from the event's Distributed Tracing extension; None when absent or invalid."""
    traceparent = event.attributes.get(TRACEPARENT)
    if traceparent is None:
        return None
    carrier = {TRACEPARENT: str(traceparent)}
    if TRACESTATE in event.attributes:
        carrier[TRACESTATE] = str(event.attributes[TRACESTATE])
    found = trace.get_current_span(_W3C.extract(carrier)).get_span_context()
    if not found.is_valid:
        log.warning("event %s: extension traceparent %r is not a valid W3C traceparent; ignored", event.id, traceparent)
        return None
    return found


def consumer_parent(event: Event) -> tuple[otel_context.Context | None, list[Link]]:
    """The parent context (None: the current one) and the links for the CONSUMER span that processes `event`,
    called inside the SERVER span of the request that brought it."""
    creation = creation_context(event)
    server = trace.get_current_span()
    if creation is None or not server.is_recording():
        # No extension, or a request that is not recorded (its sampler said no): nothing to re-join.
        return None, []
    # The context the SERVER span continued from the request's headers (already extracted, never twice).
    transport: SpanContext | None = getattr(server, "parent", None)
    if transport is None or not transport.is_valid:
        # The hop before us dropped the headers: continue the producer's trace from the event itself.
        return trace.set_span_in_context(NonRecordingSpan(creation)), [Link(server.get_span_context())]
    if (transport.trace_id, transport.span_id) == (creation.trace_id, creation.span_id):
        return None, []
    return None, [Link(creation)]
