"""SERVER spans for the services' requests, from a lean ASGI middleware.

Why not FastAPIInstrumentor (or FastAPI's own telemetry): under `make bench` load they cost a large share of a
service's CPU per request: metrics instruments, a dozen attributes built through generic helpers, a wrapped
`receive`, the routes matched a second time to name the span. This middleware does what the demo needs and
no more: continue the caller's context (any propagator configured), one SERVER span per request with the
stable HTTP semantic-convention attributes, named `METHOD route` once the router has chosen the route, an
ERROR status for 5xx answers and exceptions, and none for the health checks.
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
