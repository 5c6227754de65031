"""second: `POST /` receives CloudEvents (binary or structured mode) and processes each inside a CONSUMER span;
`POST /dead-letter` logs the events a Broker gave up delivering (a Trigger's deadLetterSink).

The matching half of first's propagation step: FastAPI's SERVER span around each request has already extracted
the trace context from the request's headers (`traceparent`) and continued it. The CONSUMER span joins it, or
re-joins the producer's trace from the event itself when a hop dropped the headers (event_tracing.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from event_tracing import consumer_parent, event_attributes, flush_spans, trace_id
from second.dedupe import Redeliveries

log = logging.getLogger("second")
tracer = trace.get_tracer("second")
redeliveries = Redeliveries.from_env()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    flush_spans()


app = FastAPI(
    lifespan=lifespan,
    # One SERVER span a request (not one for each dependency and serializer too), none for health checks.
    telemetry={"operation_spans": False, "exclude": lambda scope: scope["path"] == "/healthz"},
)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


class NotACloudEvent(Exception):
    pass


async def read_event(request: Request) -> BaseCloudEvent:
    try:
        return from_http(HTTPMessage(dict(request.headers), await request.body()), JSONFormat())
    except Exception as exc:  # whatever the SDK cannot read is the sender's to mend: a 400, never a 500
        raise NotACloudEvent(str(exc) or type(exc).__name__) from exc


@app.exception_handler(NotACloudEvent)
async def not_a_cloudevent(request: Request, exc: NotACloudEvent) -> JSONResponse:
    return JSONResponse({"error": f"not a valid CloudEvent: {exc}"}, status_code=400)


@app.post("/", status_code=204)
async def receive(request: Request) -> Response:
    event = await read_event(request)
    age = redeliveries.age(event)
    if age is not None:
        # At-least-once delivery: answer 2xx so the broker stops, but do not process the event twice.
        log.warning(
            "duplicate event %s from %s: processed %.1fs ago, not processed again, traceid=%s",
            event.get_id(),
            event.get_source(),
            age,
            trace_id(),
        )
        return Response(status_code=204)
    # The extract's other half: the CONSUMER span's parent is the request's context (extracted by the SERVER
    # span), or the producer's, from the event's traceparent extension, when the request carried none.
    parent, links = consumer_parent(event)
    with tracer.start_as_current_span(
        f"process {event.get_type()}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=event_attributes(event, "process"),
        links=links,
    ):
        # The logging configuration prints the article's "Event received" block, extensions masked.
        log.info("Event received:", extra={"cloudevent": event})
        log.info("processed event %s, traceid=%s", event.get_id(), trace_id())
    redeliveries.remember(event)
    # 204: Knative would treat a CloudEvent in the response body as a reply to route back to the Broker.
    return Response(status_code=204)


@app.post("/dead-letter", status_code=204)
async def dead_letter(request: Request) -> Response:
    event = await read_event(request)
    log.warning("DEAD LETTER: traceid=%s", trace_id(), extra={"cloudevent": event})
    return Response(status_code=204)
