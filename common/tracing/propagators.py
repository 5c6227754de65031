"""Which trace-context headers the services read and write: `OTEL_PROPAGATORS`, the standard setting.

Default `b3multi,tracecontext,baggage`: every outgoing request carries both Zipkin B3 and W3C `traceparent`.
Knative Serving <= 1.18 (activator, queue-proxy) and older workloads speak B3 as well as W3C; Knative Eventing
wrote W3C only even then, and Knative >= 1.19 writes W3C only (its Eventing passes incoming `x-b3-*` headers
through unchanged, so they still name the sender's span). On the way in, a composite
propagator lets the last one that finds a context win, so tracecontext comes after b3: when a caller sends both
and they disagree, W3C wins.

`tracecontext`, `b3` and `b3multi` name the strict readers in common/wire/ (each says which upstream gap it fills
and when to delete it); `baggage` is the stock one.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator

from common.service.settings import env_str, fail_startup
from common.wire.b3 import B3_FIELDS, B3Multi, B3Single
from common.wire.w3c import TRACEPARENT, TRACESTATE, W3CTraceContext

DEFAULT_PROPAGATORS: Final = "b3multi,tracecontext,baggage"

TRACE_HEADERS: Final = frozenset({TRACEPARENT, TRACESTATE, *B3_FIELDS})
"""Every header that carries trace context, whichever propagators are configured (logged in full: no secret)."""

_KNOWN: dict[str, type[TextMapPropagator]] = {
    "tracecontext": W3CTraceContext,
    "baggage": W3CBaggagePropagator,
    "b3": B3Single,
    "b3multi": B3Multi,
}


def propagator_names() -> list[str]:
    """The names in OTEL_PROPAGATORS, checked. Call before OpenTelemetry's `propagate` module is imported:
    it reads the same variable at import time and dies with a traceback on a name it does not know."""
    names = [name.strip() for name in env_str("OTEL_PROPAGATORS", DEFAULT_PROPAGATORS).split(",") if name.strip()]
    unknown = [name for name in names if name not in _KNOWN and name != "none"]
    if unknown:
        fail_startup(f"OTEL_PROPAGATORS names unknown propagator(s) {unknown}; known: {', '.join(_KNOWN)}, none")
    return [name for name in names if name != "none"]


def propagator_from_env() -> TextMapPropagator:
    return CompositePropagator([_KNOWN[name]() for name in propagator_names()])
