"""Zero-code instrumentation: the services run under `opentelemetry-instrument`, as the OpenTelemetry Operator
runs them, and `common/tracing/setup.py` steps aside for the provider the distro installs.

`make run ZERO_CODE=1` and the tests use these; docs/workshop.md shows the same settings for one service.
"""

from __future__ import annotations

from typing import Final

from tools.stack import ROOT

LAUNCHER: Final = (str(ROOT / ".venv" / "bin" / "opentelemetry-instrument"),)

ENV: Final = {
    # The distro's defaults are gRPC and metrics and logs over OTLP too; the demo's receivers (ours, Jaeger's
    # 4318) take traces over OTLP/HTTP.
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    # What common/tracing/setup.py passes in code: no span for each liveness probe.
    "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": "healthz",
}
