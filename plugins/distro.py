"""`OTEL_PYTHON_DISTRO=knative_tracing` (an `opentelemetry_distro` entry point): OpenTelemetry's own distro, run
by `initialize()` in each service's `__main__.py`, with two additions:

- **settings checked first**: a value OpenTelemetry or uvicorn would take badly (an exporter, protocol or sampler
  it does not know, an endpoint that is no URL, a port that is no number, a log format) stops the service with
  one line naming the setting and what it accepts, where OpenTelemetry would log a traceback and run on
  without tracing. (OTEL_PROPAGATORS is the exception: OpenTelemetry reads it as `initialize` is imported,
  before any distro runs, and stops with its own "Propagator ... not found".)
- **names**: `service.name` falls back on Knative's `K_SERVICE`, then on the service's own name (the package
  `python -m` runs), as the original demo named its services; `otlp_lean` speaks OTLP/HTTP only, so with
  `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` the stock `otlp` exporter is used;
- **`OTEL_SDK_DISABLED=true` still passes the context on**: no SDK, so no spans, but a tracer provider of the API's
  no-op tracers, which FastAPI's telemetry counts as configured, so each request's context is still extracted
  and the next hop still receives it (the API's no-op tracer continues its parent's context).
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.distro import OpenTelemetryDistro
from opentelemetry.util.types import Attributes

from plugins.settings import env_choice, env_int, fail_startup

_LOG_FORMATS = ("text", "json")
_PROTOCOLS = ("grpc", "http/protobuf")


def _names(variable: str) -> list[str]:
    return [name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()]


def _known(group: str) -> list[str]:
    return sorted({point.name for point in entry_points(group=group)})


def check_settings() -> None:
    """Stop at start-up, naming the setting, on a value that cannot work."""
    exporters = [*_known("opentelemetry_traces_exporter"), "none"]
    for name in _names("OTEL_TRACES_EXPORTER"):
        if name not in exporters:
            fail_startup(f"OTEL_TRACES_EXPORTER={name!r} must be one of: {', '.join(exporters)}")
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
    if protocol and protocol not in _PROTOCOLS:
        fail_startup(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} must be one of: {', '.join(_PROTOCOLS)}")
    sampler = os.environ.get("OTEL_TRACES_SAMPLER", "").strip()
    samplers = _known("opentelemetry_traces_sampler")
    if sampler and sampler not in samplers:
        fail_startup(f"OTEL_TRACES_SAMPLER={sampler!r} must be one of: {', '.join(samplers)}")
    for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        endpoint = os.environ.get(variable, "").strip()
        if endpoint and "://" not in endpoint:
            fail_startup(f"{variable}={endpoint!r} must be a URL such as http://localhost:4318")
    env_choice("LOG_FORMAT", "text", _LOG_FORMATS)
    env_int("PORT", 0, minimum=0)


class _ContextOnlyTracerProvider(trace.TracerProvider):
    """The API's no-op tracers, as a provider FastAPI's telemetry takes for a configured one."""

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes | None = None,
    ) -> trace.Tracer:
        return trace.NoOpTracer()


def _default_names() -> None:
    env = os.environ
    if not env.get("OTEL_SERVICE_NAME", "").strip() and "service.name=" not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        env["OTEL_SERVICE_NAME"] = env.get("K_SERVICE", "").strip() or Path(sys.argv[0]).parent.name
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    if protocol.strip() == "grpc":
        env["OTEL_TRACES_EXPORTER"] = ",".join(
            "otlp" if name == "otlp_lean" else name for name in _names("OTEL_TRACES_EXPORTER")
        )


class KnativeTracingDistro(OpenTelemetryDistro):
    def _configure(self, **kwargs: Any) -> None:
        check_settings()
        _default_names()
        super()._configure(**kwargs)  # type: ignore[no-untyped-call]
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            trace.set_tracer_provider(_ContextOnlyTracerProvider())
