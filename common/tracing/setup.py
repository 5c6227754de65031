"""OpenTelemetry set up once for every service, from the standard `OTEL_*` environment variables.

Honoured: OTEL_SDK_DISABLED, OTEL_SERVICE_NAME (fallback K_SERVICE, then the service's own name),
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_EXPORTER (otlp, console, none), OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf, grpc), OTEL_PROPAGATORS,
OTEL_TRACES_SAMPLER(_ARG) and OTEL_BSP_* (read by the SDK itself).

When the process runs under `opentelemetry-instrument` (as the OpenTelemetry Operator injects it), the
distro has already installed a tracer provider with its exporter and instrumented FastAPI and httpx: this
module then steps aside instead of installing a second provider (which the API would refuse, losing our
exporter) or instrumenting twice. It still installs what makes both runs behave alike: the propagators of
OTEL_PROPAGATORS (common/tracing/propagators.py) and the B3-aware sampler (common/wire/b3.py).

Otherwise the SERVER and CLIENT spans come from common/tracing/http_in.py and http_out.py, not from FastAPI's
own telemetry and the httpx instrumentor: each module says what it saves, measured, and when to delete it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter, SpanExportResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from common.service.logs import setup_logging
from common.service.settings import env_choice, env_float, env_int, env_str, fail_startup
from common.tracing.http_in import ServerSpans
from common.tracing.propagators import propagator_from_env
from common.wire.b3 import B3AwareSampler, sampler_from_env

log = logging.getLogger(__name__)

# Liveness and readiness probes run every few seconds; a span each would drown the demo's traces.
EXCLUDED_PATHS = ("/healthz",)

FASTAPI_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
"""Every app's `FastAPI(telemetry=...)`: FastAPI's own telemetry off, since common/tracing/http_in.py makes the
SERVER spans (both would make two per request)."""


class SpanCounter(SpanProcessor):
    """Counts the spans this process ends, so shutdown can say how many were made: `make bench` compares that
    with what the backend received (a dropped span is a silent loss)."""

    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


@dataclass
class Telemetry:
    service_name: str
    provider: TracerProvider | None
    """The provider to flush on SIGTERM: ours, or the one opentelemetry-instrument installed; None when disabled."""
    counter: SpanCounter | None = None

    def shutdown(self) -> None:
        """Flush and stop exporting: called on SIGTERM so spans survive Knative's scale to zero."""
        if self.provider is not None:
            _shutdown_within(self.provider, export_timeout())
        if self.counter is not None:
            log.info("telemetry: %d spans ended in this process, flushed to the exporter", self.counter.ended)


def export_timeout() -> float:
    """OTEL_BSP_EXPORT_TIMEOUT in seconds (the variable is in ms, default 30000). The SDK reads it but does not
    apply it; here it bounds the flush at shutdown."""
    return env_float("OTEL_BSP_EXPORT_TIMEOUT", 30000.0) / 1000


def _shutdown_within(provider: TracerProvider, seconds: float) -> None:
    """Flush and stop `provider`, waiting at most `seconds`: with the trace backend hanging, the SDK would
    wait on each queued batch's export in turn, and SIGTERM must end in bounded time."""
    worker = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        log.warning("spans not all exported within %.1fs at shutdown (trace backend slow or down); exiting", seconds)


EXPORT_BATCH_SIZE = 128
"""The demo's default for OTEL_BSP_MAX_EXPORT_BATCH_SIZE (the SDK's is 512): fewer spans held at once. Measured
with three paired rounds of the bench's load (docs/bench.md): RSS 1.6-2.5 MB lower per service (the broker
62.4-63.1 MB instead of 64.0-64.9, over the 64 MB goal), CPU per request and throughput no worse. Back to the
SDK's default if a measurement shows the extra posts (about ten a second per service under load) cost more."""


def _export_batch_size() -> int | None:
    """EXPORT_BATCH_SIZE unless OTEL_BSP_MAX_EXPORT_BATCH_SIZE is set (then None: the SDK reads it), never above
    OTEL_BSP_MAX_QUEUE_SIZE, which the SDK would refuse."""
    if os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "").strip():
        return None
    return min(EXPORT_BATCH_SIZE, env_int("OTEL_BSP_MAX_QUEUE_SIZE", 2048, minimum=1))


def service_name(default: str) -> str:
    return env_str("OTEL_SERVICE_NAME", env_str("K_SERVICE", default))


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


class LazyExporter(SpanExporter):
    """Builds the real exporter on the batch worker's first export, not at start-up: the OTLP exporters import
    `requests` or `grpc` (about 70 ms), which Knative's cold start would otherwise pay before the first request."""

    def __init__(self, build: Callable[[], SpanExporter]) -> None:
        self._build = build
        self._exporter: SpanExporter | None = None

    def _real(self) -> SpanExporter:
        if self._exporter is None:
            self._exporter = self._build()
        return self._exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._real().export(spans)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter is None or self._exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        if self._exporter is not None:
            self._exporter.shutdown()


def _exporter() -> SpanExporter | None:
    kind = env_choice("OTEL_TRACES_EXPORTER", "otlp", ("otlp", "console", "none"))
    if kind == "none":
        return None
    if kind == "console":
        return ConsoleSpanExporter()
    protocol = env_choice("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", ("http/protobuf", "grpc"))
    return LazyExporter(_grpc_exporter if protocol == "grpc" else _http_exporter)


def _grpc_exporter() -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _http_exporter() -> SpanExporter:
    # The stock exporter over urllib3 with a faster encoder: common/tracing/otlp.py says what each saves.
    from common.tracing.otlp import OTLPHTTPSpanExporter

    return OTLPHTTPSpanExporter()


def setup_telemetry(default_name: str) -> Telemetry:
    """Install the propagators and, unless disabled or already done by a distro, the tracer provider."""
    name = service_name(default_name)
    setup_logging(name)
    propagate.set_global_textmap(propagator_from_env())
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        log.info("tracer provider already installed (opentelemetry-instrument?): using it")
        # The distro built its sampler from OTEL_TRACES_SAMPLER without B3's "defer": wrap it, so a request with
        # B3 ids and no decision is sampled the same in both runs. Tracers made from now on (the SERVER spans'
        # among them) take the provider's sampler; the ones made before only ever see local parents.
        if not isinstance(existing.sampler, B3AwareSampler):
            existing.sampler = B3AwareSampler(existing.sampler)
        # Still ours to flush on SIGTERM: uvicorn ends by re-raising the signal, so the distro's atexit flush
        # never runs and the spans still batched would be lost.
        return Telemetry(name, existing)
    if _sdk_disabled():
        # No provider: the API's no-op tracer still carries the incoming context to outgoing requests.
        return Telemetry(name, None)
    check_endpoint_setting()
    export_timeout()  # checked now, not first at SIGTERM
    resource = Resource.create({"service.name": name})
    provider = TracerProvider(resource=resource, sampler=sampler_from_env())
    counter = SpanCounter()
    provider.add_span_processor(counter)
    exporter = _exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=_export_batch_size()))
    trace.set_tracer_provider(provider)
    return Telemetry(name, provider, counter)


def instrument_app(app: FastAPI) -> None:
    """SERVER spans for `app` (none for health checks), unless opentelemetry-instrument already did it."""
    if getattr(app, "_is_instrumented_by_opentelemetry", False):
        return
    if getattr(app, "_telemetry", {}).get("tracing"):
        fail_startup("create the FastAPI app with telemetry=FASTAPI_TELEMETRY: its own spans would double ours")
    app.add_middleware(ServerSpans, excluded_paths=EXCLUDED_PATHS)


def check_endpoint_setting() -> None:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    if endpoint and "://" not in endpoint:
        fail_startup(f"OTEL_EXPORTER_OTLP_ENDPOINT={endpoint!r} must be a URL such as http://localhost:4318")


_W3C = TraceContextTextMapPropagator()


def current_trace_id() -> str | None:
    """The trace id as the services show it to people: 32 lower-hex digits, or None outside any trace."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, for the article's `Traceparent` response header."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")
