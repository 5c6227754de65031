"""`python -m broker`: OpenTelemetry from the `OTEL_*` environment, then the broker served by uvicorn on HOST:PORT
(default 127.0.0.1:8082), uvicorn's other settings from its `UVICORN_*` variables."""

import os

import uvicorn
from opentelemetry import trace
from opentelemetry.instrumentation.auto_instrumentation import initialize

# Unless `opentelemetry-instrument` (or the OpenTelemetry Operator's injection of it) already did.
if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
    initialize()
uvicorn.main(
    [
        "broker.app:create_app",
        "--factory",
        "--host",
        os.environ.get("HOST", "127.0.0.1"),
        "--port",
        os.environ.get("PORT", "8082"),
    ]
)
