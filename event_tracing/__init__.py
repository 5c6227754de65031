"""Tracing CloudEvents: the spans around an event and the trace context that travels inside it. The lesson
module of first and second, read after them.

Span attributes follow the OpenTelemetry CloudEvents and messaging conventions. The `{destination}` in
`send {destination}` / `process {destination}` is the event type: Knative routes by type (the Trigger filters
on it), it is low-cardinality, and both producer and consumer know it.

The CloudEvents Distributed Tracing extension carries the producer's W3C `traceparent`/`tracestate` as event
attributes (`ce-traceparent` in binary mode), which no intermediary rewrites, unlike the HTTP headers each hop
replaces with its own. first writes it when `EVENT_TRACE_EXTENSION=true`. second reads it the way the
messaging conventions describe for a push consumer:

- the request carried a context (the normal case): the CONSUMER span stays a child of the HTTP SERVER span and
  links to the producer's context, when that is not already its parent;
- the request carried none (a hop that does not propagate): the producer's context becomes the CONSUMER span's
  parent, so the event rejoins the producer's trace, and the span links to the SERVER span so the HTTP request
  stays reachable.
"""

from __future__ import annotations

import logging
import os
import threading

from cloudevents.core.base import BaseCloudEvent
from opentelemetry import context, trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

log = logging.getLogger(__name__)

MESSAGING_SYSTEM = "knative"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# The extension is W3C Trace Context whatever OTEL_PROPAGATORS says about the HTTP headers.
_W3C = TraceContextTextMapPropagator()


def event_attributes(event: BaseCloudEvent, operation: str) -> Attributes:
    """The attributes of the PRODUCER (`send`) or CONSUMER (`process`) span of `event`."""
    attributes = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.destination.name": event.get_type(),
        "messaging.operation.name": operation,
        "messaging.operation.type": operation,
        "messaging.message.id": event.get_id(),
        "cloudevents.event_id": event.get_id(),
        "cloudevents.event_source": event.get_source(),
        "cloudevents.event_type": event.get_type(),
        "cloudevents.event_spec_version": event.get_specversion(),
    }
    subject = event.get_subject()
    if subject is not None:
        attributes["cloudevents.event_subject"] = subject
    return attributes


def trace_extension() -> dict[str, str]:
    """The current span's context as the Distributed Tracing extension's attributes: `traceparent`, and
    `tracestate` when there is one."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier


def trace_id() -> str | None:
    """The current trace id as people see it in a trace UI (32 hex digits), or None outside any trace."""
    span_context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


def _creation_context(event: BaseCloudEvent) -> SpanContext | None:
    """The producer's context from the event's Distributed Tracing extension; None when absent or invalid."""
    attributes = event.get_attributes()
    traceparent = attributes.get(TRACEPARENT)
    if traceparent is None:
        return None
    carrier = {TRACEPARENT: str(traceparent)}
    if TRACESTATE in attributes:
        carrier[TRACESTATE] = str(attributes[TRACESTATE])
    found = trace.get_current_span(_W3C.extract(carrier)).get_span_context()
    if not found.is_valid:
        log.warning(
            "event %s: extension traceparent %r is not a valid W3C traceparent; ignored", event.get_id(), traceparent
        )
        return None
    return found


def consumer_parent(event: BaseCloudEvent) -> tuple[context.Context | None, list[Link]]:
    """The parent context (None: the current one) and the links for the CONSUMER span that processes `event`,
    called inside the SERVER span of the request that brought it."""
    creation = _creation_context(event)
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


def flush_spans() -> None:
    """Export the spans still batched and stop the tracer provider: called as the service stops, since Knative
    scales a service to zero with SIGTERM and uvicorn then ends the process by that signal, so nothing that would
    run at exit does. Within OTEL_BSP_EXPORT_TIMEOUT: the SDK does not apply that bound to its own flush, and a
    hanging trace backend must not hold the stop, so the flush runs on a thread waited for that long."""
    shutdown = getattr(trace.get_tracer_provider(), "shutdown", None)  # the SDK's provider has it, the API's not
    if shutdown is None:
        return
    seconds = int(os.environ.get("OTEL_BSP_EXPORT_TIMEOUT", "30000")) / 1000
    flushing = threading.Thread(target=shutdown, name="flush-spans", daemon=True)
    flushing.start()
    flushing.join(seconds)
    if flushing.is_alive():
        log.warning("spans not all exported within %.1fs at shutdown (trace backend slow or down)", seconds)
