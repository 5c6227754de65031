"""second's HTTP API: `POST /` receives CloudEvents in binary or structured mode; `POST /dead-letter` logs the
events the Broker gave up delivering (the Trigger's deadLetterSink)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from common import cloudevent
from common.event_context import consumer_parent
from common.ids import current_trace_id
from common.messaging import event_attributes
from common.receiving import answer_rejections, read_event
from common.telemetry import FASTAPI_TELEMETRY, instrument_app, setup_telemetry
from second.dedupe import Redeliveries

SERVICE = "second"
DEFAULT_PORT = 8081

log = logging.getLogger(SERVICE)
tracer = trace.get_tracer(SERVICE)


def create_app() -> FastAPI:
    telemetry = setup_telemetry(SERVICE)
    redeliveries = Redeliveries.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        telemetry.shutdown()

    app = FastAPI(
        title=SERVICE, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None, telemetry=FASTAPI_TELEMETRY
    )

    # No response model: building one costs ~25 ms of cold start (and imports pydantic.v1) for a fixed body.
    @app.get("/healthz", response_model=None)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

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
        parent, links = consumer_parent(event, request.headers)
        with tracer.start_as_current_span(
            f"process {event.type}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=event_attributes(event, "process"),
            links=links,
        ):
            log.info("%s", cloudevent.describe(event))
            log.info("processed event %s, traceid=%s", event.id, current_trace_id())
        redeliveries.remember(event)
        # 204: Knative would treat a CloudEvent in the response body as a reply to route back to the Broker.
        return Response(status_code=204)

    @app.post("/dead-letter", status_code=204)
    async def dead_letter(request: Request) -> Response:
        event = await read_event(request)
        log.warning("DEAD LETTER: %s\ntraceid=%s", cloudevent.describe(event), current_trace_id())
        return Response(status_code=204)

    answer_rejections(app)
    instrument_app(app)
    return app
