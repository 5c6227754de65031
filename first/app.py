"""first: `GET /` and `POST /` each send one CloudEvent to the Broker, inside a PRODUCER span.

Read this file first. The propagation step is the one commented `propagate.inject` line: it writes the trace
context into the request to the Broker, whose SERVER span continues it. Then second/app.py, then
event_tracing.py. The SERVER span around each request comes from FastAPI's own telemetry, the exporter,
sampler and propagators from the `OTEL_*` environment (first/__main__.py).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from event_tracing import event_attributes, flush_spans, trace_extension, trace_id

EVENT_TYPE = "dev.knative.tracing.hello"
"""The type the Trigger in config/trigger.yaml filters on."""
EVENT_SOURCE = "first"
# Where events go: K_SINK, set by Knative's SinkBinding; locally the local broker's ingress.
SINK = os.environ.get("K_SINK", "http://127.0.0.1:8082/default/default")
# binary (Knative's default: attributes in ce- headers, data as the body) or structured (one JSON document).
MODE = os.environ.get("EVENT_MODE", "binary")


def switch(name: str, default: str) -> bool:
    """A workshop switch, true or false; anything else stops first, naming it."""
    value = os.environ.get(name, default).strip().lower()
    if value not in ("true", "false"):
        sys.stderr.write(f"error: {name}={value!r} must be true or false\n")
        raise SystemExit(2)
    return value == "true"


# PROPAGATE_CONTEXT=false breaks the trace at the broker on purpose; EVENT_TRACE_EXTENSION=true also puts the
# trace context inside the event, where no hop rewrites it.
PROPAGATE_CONTEXT = switch("PROPAGATE_CONTEXT", "true")
TRACE_EXTENSION = switch("EVENT_TRACE_EXTENSION", "false")
TIMEOUT = httpx.Timeout(float(os.environ.get("SINK_TIMEOUT", "5")), connect=2.0)
# The broker's limit on an event (Knative's ingress has one too): say so here rather than relay its 413.
MAX_EVENT_BYTES = int(os.environ.get("MAX_EVENT_BYTES", str(1024 * 1024)))
# The caller's Content-Type becomes the event's datacontenttype, which must be a media type (RFC 2045), in ASCII.
MEDIA_TYPE = re.compile(r'[\w.+-]+/[\w.+-]+(\s*;\s*[\w.+-]+=([\w.+-]+|"[ !#-\[\]-~]*"))*\s*', re.ASCII)
_sink = urlsplit(SINK)
POST_ATTRIBUTES: dict[str, str | int] = {
    "http.request.method": "POST",
    "url.full": SINK,
    "server.address": _sink.hostname or "",
    "server.port": _sink.port or (443 if _sink.scheme == "https" else 80),
}

log = logging.getLogger("first")
tracer = trace.get_tracer("first")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if not PROPAGATE_CONTEXT:
        log.warning("PROPAGATE_CONTEXT=false: events leave with no trace context, so each trace breaks at the broker")
    elif TRACE_EXTENSION:
        log.info("EVENT_TRACE_EXTENSION=true: events also carry traceparent as a CloudEvents extension attribute")
    # One client for the life of the process: keep-alive connections to the broker. An http sink (Knative's broker
    # ingress) never uses TLS, so no CA bundle is loaded for it (docs/bench.md: memory and cold start).
    async with httpx.AsyncClient(timeout=TIMEOUT, verify=SINK.startswith("https://")) as app.state.client:
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


@app.api_route("/", methods=["GET", "POST"])
async def send(request: Request) -> JSONResponse:
    # The logging configuration prints the headers, credentials masked; without it, only this title.
    log.info("Request headers:", extra={"http_headers": request.headers.items()})
    body = await request.body()
    data = body or f"hello from first, traceid={trace_id()}".encode()
    content_type = request.headers.get("content-type", "application/octet-stream") if body else "text/plain"
    if not MEDIA_TYPE.fullmatch(content_type):
        return JSONResponse({"error": f"'datacontenttype' {content_type!r} is not a media type"}, status_code=400)
    event = CloudEvent({"type": EVENT_TYPE, "source": EVENT_SOURCE, "datacontenttype": content_type}, data)
    with tracer.start_as_current_span(
        f"send {EVENT_TYPE}", kind=SpanKind.PRODUCER, attributes=event_attributes(event, "send")
    ) as producer:
        if TRACE_EXTENSION and PROPAGATE_CONTEXT:
            # The PRODUCER span's context inside the event too, where no hop rewrites it.
            event = CloudEvent({**event.get_attributes(), **trace_extension()}, data)
        # Data that is itself a structured CloudEvent goes structured: in binary mode its Content-Type would make
        # the receiver read the data as the event (the HTTP binding decides the mode by Content-Type first).
        structured = MODE == "structured" or content_type.startswith("application/cloudevents")
        message = to_structured_event(event) if structured else to_binary_event(event)
        if len(message.body) > MAX_EVENT_BYTES:
            # Structured mode carries the data inside JSON (base64 for bytes: a third more).
            error = f"the event is {len(message.body)} bytes once encoded in {MODE} mode, over MAX_EVENT_BYTES"
            return broker_error(producer, 413, error, None, event)
        headers = dict(message.headers)
        with tracer.start_as_current_span("POST", kind=SpanKind.CLIENT, attributes=POST_ATTRIBUTES) as post:
            if PROPAGATE_CONTEXT:
                # THE PROPAGATION STEP, the lesson of the article: write the current (CLIENT) span's trace context
                # into the request's headers (`traceparent`, as OTEL_PROPAGATORS says). The broker's SERVER span
                # continues from it; without this line the trace ends here.
                propagate.inject(headers)
            try:
                reply = await request.app.state.client.post(SINK, headers=headers, content=message.body)
            except Exception as exc:  # any failure of the connection is the broker's, never a 500
                post.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                post.set_attribute("error.type", type(exc).__qualname__)
                if isinstance(exc, httpx.TimeoutException):
                    return broker_error(producer, 504, f"broker at {SINK} did not answer in time", exc, event)
                return broker_error(producer, 503, f"broker at {SINK} is unreachable", exc, event)
            post.set_attribute("http.response.status_code", reply.status_code)
            if reply.status_code >= 400:
                post.set_status(Status(StatusCode.ERROR))
        if reply.status_code >= 300:
            return broker_error(producer, 502, f"broker at {SINK} answered {reply.status_code}", None, event)
    log.info("sent event %s (%s) to %s", event.get_id(), EVENT_TYPE, SINK)
    # The article's first answers with the trace id, and the Traceparent of its own SERVER span.
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    response = JSONResponse({"trace_id": trace_id(), "event_id": event.get_id(), "sink": SINK})
    if "traceparent" in carrier:
        response.headers["traceparent"] = carrier["traceparent"]
    log.info("Response headers:", extra={"http_headers": response.headers.items()})
    return response


def broker_error(span: trace.Span, status: int, message: str, exc: Exception | None, event: CloudEvent) -> JSONResponse:
    span.set_status(Status(StatusCode.ERROR, message))
    if exc is not None:
        span.record_exception(exc)
    log.warning("event %s not delivered: %s%s", event.get_id(), message, f" ({exc!r})" if exc else "")
    return JSONResponse({"error": message, "event_id": event.get_id(), "trace_id": trace_id()}, status_code=status)
