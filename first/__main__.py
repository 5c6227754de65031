"""`python -m first`: OpenTelemetry set up from the `OTEL_*` environment, then first served by uvicorn on
HOST:PORT (Knative sets PORT). uvicorn's other settings come from its `UVICORN_*` variables."""

import logging
import os

import uvicorn
from opentelemetry import trace
from opentelemetry.instrumentation.auto_instrumentation import initialize

# The tracer provider, exporter, sampler and propagators OTEL_* names, as `opentelemetry-instrument` would,
# unless that (or the OpenTelemetry Operator's injection of it) already did.
if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
    initialize()
# The app's own INFO lines, when no UVICORN_LOG_CONFIG names a logging configuration.
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8080")
uvicorn.main(["first.app:app", "--host", host, "--port", port])
