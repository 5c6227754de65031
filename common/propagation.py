"""Which trace-context headers the services read and write.

Default `OTEL_PROPAGATORS=b3multi,tracecontext,baggage`: every outgoing request carries both Zipkin B3 (what
Knative <= 1.18 and older workloads speak) and W3C `traceparent` (what Knative >= 1.19 speaks). On the way in,
a composite propagator lets the last one that finds a context win, so tracecontext comes after b3: when a
caller sends both and they disagree, W3C wins.
"""

from __future__ import annotations

from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from common.settings import env_str, fail_startup

DEFAULT_PROPAGATORS = "b3multi,tracecontext,baggage"

_KNOWN: dict[str, type[TextMapPropagator]] = {
    "tracecontext": TraceContextTextMapPropagator,
    "baggage": W3CBaggagePropagator,
    "b3": B3SingleFormat,
    "b3multi": B3MultiFormat,
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
