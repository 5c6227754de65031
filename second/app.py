"""second's HTTP API: `POST /` receives CloudEvents in binary or structured mode; `POST /dead-letter` logs the
events the Broker gave up delivering (the Trigger's deadLetterSink).

The matching half of first's propagation step: the SERVER span around each request (common/tracing/http_in.py)
has already extracted the trace context from the request's headers and continued it. Here the CONSUMER span
joins it, or re-joins the producer's trace from the event itself when a hop dropped the headers
(common/tracing/events.py).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from common.service.app import service_app
from common.service.incoming import read_event
from common.tracing.events import consumer_parent, event_attributes
from common.tracing.setup import current_trace_id
from common.wire.cloudevents import describe
from second.dedupe import Redeliveries

SERVICE = "second"
DEFAULT_PORT = 8081

log = logging.getLogger(SERVICE)
tracer = trace.get_tracer(SERVICE)


def create_app() -> FastAPI:
    redeliveries = Redeliveries.from_env()
    app = service_app(SERVICE)

    @app.post("/", status_code=204)
    async def receive(request: Request) -> Response:
        event = await read_event(request)
        age = redeliveries.age(event)
        if age is not None:
            # At-least-once delivery: answer 2xx so the broker stops, but do not process the event twice.
            log.warning(
                "duplicate event %s from %s: processed %.1fs ago, not processed again, traceid=%s",
                event.id,
                event.source,
                age,
                current_trace_id(),
            )
            return Response(status_code=204)
        # The extract's other half: the CONSUMER span's parent is the request's context (already extracted by the
        # SERVER span), or the producer's from the event's traceparent extension when the request carried none.
        parent, links = consumer_parent(event)
        with tracer.start_as_current_span(
            f"process {event.type}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=event_attributes(event, event.type, "process"),
            links=links,
        ):
            log.info("%s", describe(event))
            log.info("processed event %s, traceid=%s", event.id, current_trace_id())
        redeliveries.remember(event)
        # 204: Knative would treat a CloudEvent in the response body as a reply to route back to the Broker.
        return Response(status_code=204)

    @app.post("/dead-letter", status_code=204)
    async def dead_letter(request: Request) -> Response:
        event = await read_event(request)
        log.warning("DEAD LETTER: %s\ntraceid=%s", describe(event), current_trace_id())
        return Response(status_code=204)

    return app
