"""The broker's ingress: `POST /<namespace>/<broker>`, the path shape of Knative's broker-ingress."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI, Request, Response
from opentelemetry import trace

from broker.delivery import Dispatcher
from broker.http_client import new_client
from broker.settings import Settings
from broker.spans import event_attributes
from event_tracing import flush_spans
from plugins.receive import Rejected, problem, read_event

SERVICE = "broker"
DEFAULT_PORT = 8082

log = logging.getLogger(SERVICE)
tracer = trace.get_tracer(SERVICE)


def _arrival_time() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def create_app() -> FastAPI:
    settings = Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        destinations = [t.subscriber for t in settings.routing.triggers]
        destinations += [t.delivery.dead_letter_sink or "" for t in settings.routing.triggers]
        async with new_client(destinations, settings.delivery_timeout) as client:
            app.state.dispatcher = Dispatcher(client, settings.dead_letters)
            yield
            await app.state.dispatcher.drain(settings.drain_timeout)
        # After the deliveries drained: their spans are flushed too.
        flush_spans()

    app = FastAPI(
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry={"operation_spans": False, "exclude": lambda scope: scope["path"] == "/healthz"},
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(Rejected)
    async def rejected(request: Request, exc: Rejected) -> Response:
        return exc.response

    for t in settings.routing.triggers:
        log.info("trigger %s: broker %s, filter %s -> %s", t.name, t.broker, dict(t.filter), t.subscriber)
    log.info("events this broker gives up on are kept in %s (DEAD_LETTER_FILE)", settings.dead_letters.path)

    @app.post("/{namespace}/{name}")
    async def ingress(namespace: str, name: str, request: Request) -> Response:
        if (namespace, name) not in settings.routing.brokers:
            return problem(404, f"no broker {name!r} in namespace {namespace!r}")
        event = await read_event(request)
        event = event.with_attributes({"knativearrivaltime": _arrival_time()})
        triggers = [t for t in settings.routing.for_broker(namespace, name) if t.matches(event)]
        # Backpressure: with the delivery backlog full, accept only as fast as deliveries finish.
        await request.app.state.dispatcher.room_for(len(triggers))
        span_name = f"broker:{name}.{namespace}"
        with tracer.start_as_current_span(span_name, attributes=event_attributes(event, span_name)):
            if not triggers:
                log.info("event %s (%s) matches no trigger of %s/%s", event.id, event.type, namespace, name)
            request.app.state.dispatcher.dispatch(event, triggers)
        return Response(status_code=202)

    return app
