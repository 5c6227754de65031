"""The services' outgoing POSTs, each in a CLIENT span that carries the trace context to the receiver.

Made here rather than by HTTPXClientInstrumentor, which wraps every httpx transport call and costs more per
request than the span itself (see docs/bench.md). Under `opentelemetry-instrument` the distro has already
instrumented httpx: then the instrumentor makes the span and injects the context, and this module only posts,
so there is never a second CLIENT span. Inside `suppress_http_instrumentation()` it adds neither span nor
headers, like the instrumentor.
"""

from __future__ import annotations

import sys
from functools import cache
from urllib.parse import urlsplit

import httpx
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode

_tracer = trace.get_tracer("common.client_spans")


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


async def post(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    content: bytes,
    timeout: float | None = None,
) -> httpx.Response:
    """POST `content` (`timeout` None: the client's own); `headers` gain the CLIENT span's trace context."""
    limit = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
    # Suppressed (PROPAGATE_CONTEXT=false, see common.event_context): no span and no trace headers, exactly as
    # the httpx instrumentation behaves.
    if _httpx_instrumented() or not is_http_instrumentation_enabled():
        return await client.post(url, headers=headers, content=content, timeout=limit)
    with _tracer.start_as_current_span("POST", kind=SpanKind.CLIENT, attributes=_url_attributes(url)) as span:
        propagate.inject(headers)
        try:
            reply = await client.post(url, headers=headers, content=content, timeout=limit)
        except httpx.HTTPError as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            raise
        span.set_attribute("http.response.status_code", reply.status_code)
        if reply.status_code >= 400:
            span.set_status(Status(StatusCode.ERROR))
            span.set_attribute("error.type", str(reply.status_code))
        return reply
