"""first's HTTP API: `GET /` and `POST /` each send one CloudEvent to the Broker.

Read this file first: it makes the PRODUCER span and holds the propagation step, the one line that puts the
trace context on the outgoing event request. Then common/tracing/http_out.py (the CLIENT span around it).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from common.service.app import service_app
from common.service.header_logging import format_headers
from common.service.http_client import new_client
from common.service.incoming import MAX_EVENT_BYTES, read_body
from common.tracing.events import event_attributes, sending, trace_extension
from common.tracing.http_out import client_span
from common.tracing.setup import current_trace_id, current_traceparent
from common.wire.cloudevents import Event, EventError, new_event, to_http
from first.settings import Settings

SERVICE = "first"
DEFAULT_PORT = 8080
EVENT_TYPE = "dev.knative.tracing.hello"
"""The type the Trigger in config/trigger.yaml filters on."""
EVENT_SOURCE = "first"

log = logging.getLogger(SERVICE)
tracer = trace.get_tracer(SERVICE)


def _event_data(body: bytes, content_type: str | None, trace_id: str | None) -> tuple[bytes, str]:
    """The event's data and datacontenttype: the POST body's bytes as sent (never decoded and encoded again,
    which would change numbers and repeated keys in JSON), else the article's greeting."""
    if not body:
        return f"hello from first, traceid={trace_id}".encode(), "text/plain"
    return body, content_type or "application/octet-stream"


def create_app() -> FastAPI:
    settings = Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One client for the life of the process: keep-alive connections to the broker, no per-request setup.
        timeout = httpx.Timeout(settings.timeout, connect=settings.connect_timeout)
        async with new_client([settings.sink], timeout) as client:
            app.state.client = client
            yield

    app = service_app(SERVICE, lifespan)
    if not settings.propagate_context:
        log.warning("PROPAGATE_CONTEXT=false: events leave with no trace context, so each trace breaks at the broker")
    elif settings.trace_extension:
        log.info("EVENT_TRACE_EXTENSION=true: events also carry traceparent as a CloudEvents extension attribute")

    @app.api_route("/", methods=["GET", "POST"])
    async def send(request: Request) -> JSONResponse:
        log.info("%s", format_headers("Request headers:", request.headers.items()))
        trace_id = current_trace_id()
        data, content_type = _event_data(await read_body(request), request.headers.get("content-type"), trace_id)
        try:
            event = new_event({"type": EVENT_TYPE, "source": EVENT_SOURCE, "datacontenttype": content_type}, data)
        except EventError as exc:
            # The caller's Content-Type becomes datacontenttype, which must be a media type: say what is wrong.
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        with tracer.start_as_current_span(
            f"send {event.type}", kind=SpanKind.PRODUCER, attributes=event_attributes(event, event.type, "send")
        ) as span:
            if settings.trace_extension:
                # The PRODUCER span's context inside the event too, where no hop rewrites it.
                event = event.with_attributes(trace_extension())
            headers, body = to_http(event, settings.mode)
            if len(body) > MAX_EVENT_BYTES:
                # Structured mode carries the data inside JSON (escaped, or base64: a third more), which can push a
                # body that fitted here past the broker's limit: say so now rather than relay the broker's 413.
                message = (
                    f"the event is {len(body)} bytes once encoded in {settings.mode} mode, over the broker's "
                    f"{MAX_EVENT_BYTES}-byte limit (MAX_EVENT_BYTES); send less data, or use EVENT_MODE=binary"
                )
                span.set_status(Status(StatusCode.ERROR, message))
                log.warning("event %s refused: %s", event.id, message)
                return JSONResponse({"error": message, "event_id": event.id, "trace_id": trace_id}, status_code=413)
            try:
                with sending(settings.propagate_context), client_span(settings.sink) as post:
                    if settings.propagate_context:
                        # THE PROPAGATION STEP, the lesson of the article: write the current (CLIENT) span's trace
                        # context into the request's headers, as OTEL_PROPAGATORS says (traceparent and B3). The
                        # broker's SERVER span continues from them; without this line the trace ends here.
                        propagate.inject(headers)
                    reply = await post(request.app.state.client, headers, body)
            except httpx.TimeoutException as exc:
                return _broker_error(span, 504, f"broker at {settings.sink} did not answer in time", exc, event)
            except Exception as exc:
                # Any failure of the connection is the broker's, never a 500.
                # httpx.HTTPError mostly; but a connection reset at the wrong moment has surfaced as an
                # AttributeError from inside httpcore, and the caller deserves the same clear 503 for it.
                return _broker_error(span, 503, f"broker at {settings.sink} is unreachable", exc, event)
            if reply.status_code >= 300:
                detail = f"broker at {settings.sink} answered {reply.status_code}"
                return _broker_error(span, 502, detail, None, event)
        log.info("sent event %s (%s) to %s", event.id, event.type, settings.sink)
        response = JSONResponse({"trace_id": trace_id, "event_id": event.id, "sink": settings.sink})
        traceparent = current_traceparent()
        if traceparent:
            response.headers["traceparent"] = traceparent
        log.info("%s", format_headers("Response headers:", response.headers.items()))
        return response

    return app


def _broker_error(span: trace.Span, status: int, message: str, exc: Exception | None, event: Event) -> JSONResponse:
    span.set_status(Status(StatusCode.ERROR, message))
    if exc is not None:
        span.record_exception(exc)
    log.warning("event %s not delivered: %s%s", event.id, message, f" ({exc!r})" if exc else "")
    return JSONResponse({"error": message, "event_id": event.id, "trace_id": current_trace_id()}, status_code=status)
