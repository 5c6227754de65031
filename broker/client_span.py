"""CLIENT spans for the broker's deliveries. The caller puts the trace context on the request inside the span, by
its own `propagate.inject(headers)` line, as first/app.py does, so the step stays visible where it happens
(broker/delivery.py): this module never writes trace headers.

    with client_span(url) as post:
        propagate.inject(headers)  # the propagation step: the receiver's SERVER span continues this CLIENT span
        reply = await post(client, headers, body)

Should httpx be instrumented after all (`OTEL_PYTHON_DISABLED_INSTRUMENTATIONS` without `httpx`), its
instrumentor makes the CLIENT span and injects the context itself, and `client_span` makes none, so there is never
a second one.

Hand-made rather than `HTTPXClientInstrumentor`, and not for its cost (docs/bench.md): the instrumentor writes the
trace headers itself, so the propagation step would no longer be a line of its own. Delete this module, and let
the instrumentor run, if the demo stops showing that step.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import cache
from urllib.parse import urlsplit

import httpx
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode

_tracer = trace.get_tracer(__name__)

Post = Callable[[httpx.AsyncClient, dict[str, str], bytes], Awaitable[httpx.Response]]


@cache
def _httpx_instrumented() -> bool:
    """True when opentelemetry-instrument has instrumented httpx (decided at start-up, before any request)."""
    module = sys.modules.get("opentelemetry.instrumentation.httpx")
    return module is not None and bool(module.HTTPXClientInstrumentor().is_instrumented_by_opentelemetry)


@cache
def _url_attributes(url: str) -> dict[str, str | int]:
    # A service posts to one or two URLs for its whole life: parse each once.
    parts = urlsplit(url)
    attributes: dict[str, str | int] = {"http.request.method": "POST", "url.full": url}
    if parts.hostname:
        attributes["server.address"] = parts.hostname
        attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    return attributes


@contextmanager
def client_span(url: str, timeout: float | None = None) -> Iterator[Post]:
    """A CLIENT span (current inside the block) for one POST to `url`, and the function that makes the POST
    and records its outcome on the span (`timeout` None: the client's own)."""
    limit = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout

    async def plain(client: httpx.AsyncClient, headers: dict[str, str], content: bytes) -> httpx.Response:
        return await client.post(url, headers=headers, content=content, timeout=limit)

    if _httpx_instrumented() or not is_http_instrumentation_enabled():
        yield plain
        return
    with _tracer.start_as_current_span("POST", kind=SpanKind.CLIENT, attributes=_url_attributes(url)) as span:

        async def recorded(client: httpx.AsyncClient, headers: dict[str, str], content: bytes) -> httpx.Response:
            try:
                reply = await plain(client, headers, content)
            except httpx.HTTPError as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                raise
            span.set_attribute("http.response.status_code", reply.status_code)
            if reply.status_code >= 400:
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("error.type", str(reply.status_code))
            return reply

        yield recorded
