"""OpenTelemetry set up once for every service, from the standard `OTEL_*` environment variables.

Honoured: OTEL_SDK_DISABLED, OTEL_SERVICE_NAME (fallback K_SERVICE, then the service's own name),
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_EXPORTER (otlp, console, none), OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf, grpc), OTEL_PROPAGATORS,
OTEL_TRACES_SAMPLER(_ARG) and OTEL_BSP_* (read by the SDK itself).

When the process runs under `opentelemetry-instrument` (as the OpenTelemetry Operator injects it), the
distro has already installed a tracer provider with its exporter and instrumented FastAPI and httpx: this
module then steps aside instead of installing a second provider (which the API would refuse, losing our
exporter) or instrumenting twice.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from fastapi import FastAPI
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from common.logs import setup_logging
from common.propagation import propagator_from_env
from common.settings import env_choice, env_str, fail_startup

log = logging.getLogger(__name__)

# Liveness and readiness probes run every few seconds; a span each would drown the demo's traces.
EXCLUDED_URLS = "healthz"


@dataclass
class Telemetry:
    service_name: str
    provider: TracerProvider | None
    """The provider this module installed; None when the SDK is disabled or another party installed one."""

    def shutdown(self) -> None:
        """Flush and stop exporting: called on SIGTERM so spans survive Knative's scale to zero."""
        if self.provider is not None:
            self.provider.shutdown()


def service_name(default: str) -> str:
    return env_str("OTEL_SERVICE_NAME", env_str("K_SERVICE", default))


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _exporter() -> SpanExporter | None:
    kind = env_choice("OTEL_TRACES_EXPORTER", "otlp", ("otlp", "console", "none"))
    if kind == "none":
        return None
    if kind == "console":
        return ConsoleSpanExporter()
    protocol = env_choice("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", ("http/protobuf", "grpc"))
    if protocol == "grpc":
        # Imported only when chosen: grpc costs start-up time that the HTTP default does not need.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def setup_telemetry(default_name: str) -> Telemetry:
    """Install the propagators and, unless disabled or already done by a distro, the tracer provider."""
    name = service_name(default_name)
    setup_logging(name)
    propagate.set_global_textmap(propagator_from_env())
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        log.info("tracer provider already installed (opentelemetry-instrument?): using it")
        return Telemetry(name, None)
    if _sdk_disabled():
        # No provider: the API's no-op tracer still carries the incoming context to outgoing requests.
        return Telemetry(name, None)
    check_endpoint_setting()
    resource = Resource.create({"service.name": name})
    provider = TracerProvider(resource=resource)
    exporter = _exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument()
    return Telemetry(name, provider)


def instrument_app(app: FastAPI) -> None:
    """Server spans for `app`, without the per-request internal `http receive`/`http send` spans."""
    if getattr(app, "_is_instrumented_by_opentelemetry", False):
        return
    FastAPIInstrumentor.instrument_app(app, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"])


def check_endpoint_setting() -> None:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    if endpoint and "://" not in endpoint:
        fail_startup(f"OTEL_EXPORTER_OTLP_ENDPOINT={endpoint!r} must be a URL such as http://localhost:4318")
