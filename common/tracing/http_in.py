"""SERVER spans for the services' requests, from a lean ASGI middleware: the extract step. Each request's trace
context is read from its headers (by the propagators of OTEL_PROPAGATORS, every value of a repeated header kept)
and continued by one SERVER span, named `METHOD route` once the router has chosen the route, with the stable HTTP
semantic-convention attributes, ERROR for 5xx answers and exceptions, and none for the health checks.

Hand-made rather than FastAPI's own telemetry (`FastAPI(telemetry=...)`, switched off in every app), and not for
its cost. Measured with `python -m bench.run --library server --rounds 3 --duration 5 --warmup 1 --cold-starts 1`
on 2 shared cores (load average 5-11): CPU per request of the three services, library / hand-made, paired per
round, 0.83, 1.15, 1.02, median 1.02: within the noise (in-process the middleware saves ~30 us a request,
docs/bench.md). It stays for behaviour: FastAPI 0.165's telemetry neither extracts nor attaches the caller's
context when no tracer provider is configured, so with `OTEL_SDK_DISABLED=true` a service would stop passing the
trace on, which docs/configuration.md promises and tests/e2e/test_telemetry_settings.py checks. Delete this
module, and turn FastAPI's tracing on in common/service/app.py, when FastAPI's telemetry carries the context
through with the SDK disabled. Under `opentelemetry-instrument` the distro's FastAPIInstrumentor makes the SERVER
spans instead (common/tracing/setup.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_tracer = trace.get_tracer(__name__)


class _HeaderGetter(Getter[dict[str, list[str]]]):
    def get(self, carrier: dict[str, list[str]], key: str) -> list[str] | None:
        return carrier.get(key)

    def keys(self, carrier: dict[str, list[str]]) -> list[str]:
        return list(carrier)


GETTER = _HeaderGetter()


def header_lists(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    """ASGI header pairs as {lower-case name: [values]}: a header sent twice stays two values, as the
    propagators expect (two `traceparent` headers make an ambiguous context)."""
    headers: dict[str, list[str]] = {}
    for name, value in raw:
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return headers


def _attributes(scope: Scope, headers: dict[str, list[str]]) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        "http.request.method": scope["method"],
        "url.scheme": scope.get("scheme", "http"),
        "url.path": scope["path"],
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    host = headers.get("host")
    server = scope.get("server")
    if host:
        address, _, port = host[0].rpartition(":") if not host[0].endswith("]") else (host[0], "", "")
        attributes["server.address"] = address or host[0]
        if port.isdigit():
            attributes["server.port"] = int(port)
    elif server:
        attributes["server.address"], attributes["server.port"] = server[0], server[1]
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
    agent = headers.get("user-agent")
    if agent:
        attributes["user_agent.original"] = agent[0]
    return attributes


class ServerSpans:
    """ASGI middleware: one SERVER span per HTTP request, except for `excluded_paths`."""

    def __init__(self, app: ASGIApp, excluded_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.excluded = frozenset(excluded_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.excluded:
            await self.app(scope, receive, send)
            return
        headers = header_lists(scope["headers"])
        parent = propagate.extract(headers, getter=GETTER)
        method = scope["method"]
        span = _tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
        token = context.attach(trace.set_span_in_context(span, parent))
        if not span.is_recording():
            # SDK disabled or not sampled: the context still flows to outgoing requests; nothing to record.
            try:
                await self.app(scope, receive, send)
            finally:
                context.detach(token)
            return
        span.set_attributes(_attributes(scope, headers))
        status = 0

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.set_attribute("error.type", type(exc).__qualname__)
            raise
        finally:
            _finish(span, scope, method, status)
            context.detach(token)


def _finish(span: trace.Span, scope: Scope, method: str, status: int) -> None:
    # The router records the route it chose in the scope; its template names the span (low cardinality).
    route = getattr(scope.get("route"), "path", None)
    if route:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
    if status:
        span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
        span.set_attribute("error.type", str(status))
    span.end()
