"""`python -m bench.library <service>`: the service with the library's instrumentation or propagators in place of
the hand-made ones, for `python -m bench.run --library WHAT` (docs/bench.md, "Library against hand-made").

BENCH_LIBRARY, comma-separated:
- `server`: FastAPI's own telemetry makes the SERVER spans (common/tracing/http_in.py not installed);
- `client`: HTTPXClientInstrumentor makes the CLIENT spans and injects (common/tracing/http_out.py steps aside);
- `propagators`: the stock W3C and B3 propagators instead of the strict readers of common/wire/.
The spans are the same in number and kind, so the difference is the cost of the code that makes them. Never how
the product runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from common.service.run import run
from opentelemetry.propagators.textmap import TextMapPropagator

CHOICES = ("server", "client", "propagators")


def _stock_propagators() -> TextMapPropagator:
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from plugins.propagators import propagator_names

    stock: dict[str, Callable[[], TextMapPropagator]] = {
        "tracecontext": TraceContextTextMapPropagator,
        "baggage": W3CBaggagePropagator,
        "b3": B3SingleFormat,
        "b3multi": B3MultiFormat,
    }
    return CompositePropagator([stock[name]() for name in propagator_names()])


def main(service: str, what: set[str]) -> None:
    unknown = what - set(CHOICES)
    if unknown:
        raise SystemExit(f"BENCH_LIBRARY: unknown {sorted(unknown)}; choose from {', '.join(CHOICES)}")
    if "client" in what:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().instrument()
    if "server" in what:
        import common.service.app as skeleton

        # One SERVER span a request, as the hand-made middleware makes: no operation spans, no metrics, no probes.
        telemetry = {
            "tracing": True,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "exclude": lambda scope: scope.get("path") == "/healthz",
        }
        setattr(skeleton, "FASTAPI_TELEMETRY", telemetry)  # noqa: B010 - a module's name, replaced on purpose
        setattr(skeleton, "instrument_app", lambda app: None)  # noqa: B010
    if "propagators" in what:
        from common.tracing import setup

        setattr(setup, "propagator_from_env", _stock_propagators)  # noqa: B010
    run(service)


if __name__ == "__main__":
    main(sys.argv[1], {part.strip() for part in os.environ.get("BENCH_LIBRARY", "").split(",") if part.strip()})
