"""The broker's ingress: `POST /<namespace>/<broker>`, the path shape of Knative's broker-ingress."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI, Request, Response
from opentelemetry import propagate, trace
from starlette.datastructures import Headers

from broker.delivery import Dispatcher
from broker.http_client import new_client
from broker.settings import Settings
from broker.spans import event_attributes
from broker.store import EventStore, StoreFull
from broker.triggers import Trigger
from event_tracing import flush_spans
from plugins import cloudevents
from plugins.receive import MAX_EVENT_BYTES, Rejected, problem, read_event
from plugins.server import MAX_HEADER_BYTES, MAX_HEADERS

SERVICE = "broker"
DEFAULT_PORT = 8082

log = logging.getLogger(SERVICE)
tracer = trace.get_tracer(SERVICE)


async def _replay(dispatcher: Dispatcher, store: EventStore, triggers: tuple[Trigger, ...]) -> None:
    """Deliver what the store still holds from before this start (a kill, a crash, a shutdown cut short)."""
    pending = await asyncio.to_thread(store.pending)
    if pending:
        log.warning("delivering %d events accepted before this start (from %s)", len(pending), store.path)
    by_name = {t.name: t for t in triggers}
    for stored in pending:
        try:
            event = cloudevents.parse(Headers(stored.headers), stored.body)
        except cloudevents.EventError as exc:
            # Written by this broker, so it reads back; should it not, it stays in the store, said once.
            log.error("event in %s row %d cannot be read back (%s): left there", store.path, stored.row, exc.message)
            continue
        trigger = by_name.get(stored.trigger)
        if trigger is None:
            # The Trigger is gone from the manifests: nowhere to deliver it, so it goes to the dead-letter file.
            reason = f"its Trigger {stored.trigger!r} is no longer in the manifests (BROKER_CONFIG)"
            await dispatcher.give_up(Trigger(stored.trigger, "", "", ""), event, reason, stored.row)
            continue
        size = _size(stored.headers, stored.body)
        await dispatcher.room_for(1, size)
        dispatcher.dispatch(event, size, [(trigger, stored.row)], propagate.extract(stored.context))


def _size(headers: dict[str, str], body: bytes) -> int:
    """The bytes an event holds while it waits for delivery: what the backlog's MAX_PENDING_BYTES counts."""
    return len(body) + sum(len(name) + len(value) for name, value in headers.items())


def _arrival_time() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# What an HTTP client adds to the event's own headers on the way to the subscriber: Host, Content-Length,
# User-Agent, Accept, Accept-Encoding, Connection, traceparent, tracestate (httpx's and the propagators').
HEADER_FIELDS_ADDED = 8
HEADER_BYTES_ADDED = 1024


def undeliverable(headers: dict[str, str], body: bytes) -> tuple[int, str] | None:
    """Why the event as it will be sent (headers and body) could never reach a subscriber with this service's
    own limits (MAX_HEADERS, MAX_HEADER_BYTES, MAX_EVENT_BYTES: the demo's services share them), or None. The
    ingress refuses such an event instead of accepting it and dead-lettering it at once."""
    for name, value in headers.items():
        if not value.isascii():
            return 400, (
                f"the {name} header {value!r} holds characters outside ASCII, which the broker cannot send on to "
                "the subscriber in an HTTP header; percent-encode them, or send the event in structured mode"
            )
    if len(headers) + HEADER_FIELDS_ADDED > MAX_HEADERS:
        return 400, (
            f"the event needs {len(headers)} header fields in binary mode; with those the broker adds that is over "
            f"the subscriber's {MAX_HEADERS} (MAX_HEADERS): send it in structured mode"
        )
    head = sum(len(name) + len(value) + 4 for name, value in headers.items())
    if head + HEADER_BYTES_ADDED > MAX_HEADER_BYTES:
        return 400, (
            f"the event's headers take {head} bytes in binary mode; with those the broker adds that is over the "
            f"subscriber's {MAX_HEADER_BYTES} (MAX_HEADER_BYTES): send it in structured mode"
        )
    if len(body) > MAX_EVENT_BYTES:
        return 413, f"the event is {len(body)} bytes as delivered, over MAX_EVENT_BYTES={MAX_EVENT_BYTES}"
    return None


def create_app() -> FastAPI:
    settings = Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        destinations = [t.subscriber for t in settings.routing.triggers]
        destinations += [t.delivery.dead_letter_sink or "" for t in settings.routing.triggers]
        store = EventStore.from_env(settings.dead_letters.path)
        app.state.store = store
        log.info(
            "accepted events are kept in %s until delivered (BROKER_STORE, at most %d bytes: BROKER_STORE_MAX_BYTES)",
            store.path,
            store.max_bytes,
        )
        async with new_client(destinations, settings.delivery_timeout) as client:
            app.state.dispatcher = Dispatcher(client, settings.dead_letters, store)
            replay = asyncio.create_task(_replay(app.state.dispatcher, store, settings.routing.triggers))
            yield
            replay.cancel()
            await app.state.dispatcher.drain(settings.drain_timeout)
        store.close()
        # After the deliveries drained: their spans are flushed too.
        flush_spans()

    app = FastAPI(
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # `POST /default/default/` is not an ingress path: 404, not a redirect built from the caller's Host.
        redirect_slashes=False,
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
        # Forwarded as sent (the content mode it came in): accepted only if it can be delivered so.
        headers, body = cloudevents.to_http(event, event.mode)
        refusal = undeliverable(headers, body)
        if refusal is not None:
            log.warning("refused event %s: %s", event.id, refusal[1])
            return problem(*refusal)
        triggers = [t for t in settings.routing.for_broker(namespace, name) if t.matches(event)]
        # Backpressure: with the delivery backlog full, accept only as fast as deliveries finish.
        dispatcher, store = request.app.state.dispatcher, request.app.state.store
        size = _size(headers, body)
        await dispatcher.room_for(len(triggers), size)
        span_name = f"broker:{name}.{namespace}"
        with tracer.start_as_current_span(span_name, attributes=event_attributes(event, span_name)):
            if not triggers:
                log.info("event %s (%s) matches no trigger of %s/%s", event.id, event.type, namespace, name)
                return Response(status_code=202)
            context: dict[str, str] = {}
            propagate.inject(context)
            try:
                # Durable before acknowledged: a broker killed after the 202 delivers it when started again.
                rows = await store.add([t.name for t in triggers], context, headers, body)
            except StoreFull as exc:
                dispatcher.give_back(len(triggers), size)
                log.warning("refused event %s: %s", event.id, exc)
                return problem(503, f"{exc}; try again later")
            dispatcher.dispatch(event, size, list(zip(triggers, rows, strict=True)))
        return Response(status_code=202)

    return app
