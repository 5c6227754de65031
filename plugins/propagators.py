"""Which trace-context headers the services read and write: `OTEL_PROPAGATORS`, the standard setting, resolved by
OpenTelemetry through `opentelemetry_propagator` entry points (pyproject.toml registers this project's):

- `tracecontext_strict`: W3C Trace Context read as the specification says (plugins/w3c.py);
- `b3_strict`, `b3multi_strict`: Zipkin B3 single and multi header, likewise (plugins/b3.py);
- the stock `tracecontext`, `baggage`, `b3`, `b3multi` stay available.

The demo's default is `tracecontext_strict,baggage`: W3C only, as Knative >= 1.19 propagates. The article's era
(Knative <= 1.18) wrote B3 as well: `b3multi_strict,tracecontext_strict,baggage`. On the way in a composite
propagator lets the last one that finds a context win, so tracecontext comes after b3: when a caller sends both
and they disagree, W3C wins.
"""

from __future__ import annotations

from typing import Final

from plugins.b3 import B3_FIELDS
from plugins.w3c import TRACEPARENT, TRACESTATE

TRACE_HEADERS: Final = frozenset({TRACEPARENT, TRACESTATE, *B3_FIELDS})
"""Every header that carries trace context, whichever propagators are configured (logged in full: no secret)."""
