"""Zero-code instrumentation: the services run under `opentelemetry-instrument`, as the OpenTelemetry Operator
runs them: the distro installs the tracer provider before the service starts (its `__main__` then leaves it be),
and its FastAPI instrumentor makes the SERVER spans in place of FastAPI's own telemetry, which steps aside.

`make run ZERO_CODE=1` and the tests use these; docs/workshop.md shows the same settings for one service.
"""

from __future__ import annotations

from typing import Final

from tools.stack import ROOT

LAUNCHER: Final = (str(ROOT / ".venv" / "bin" / "opentelemetry-instrument"),)

ENV: Final = {
    # The FastAPI instrumentor on; httpx's stays off, since it would write the trace headers itself and hide the
    # app's own propagation step, the lesson.
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "httpx",
    # What the apps ask of FastAPI's own telemetry in code: no span for each liveness probe.
    "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": "healthz",
}
