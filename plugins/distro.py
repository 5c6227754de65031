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
- **`OTEL_PROPAGATORS=none` that FastAPI's telemetry survives** (`_NoPropagation` says why).
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.distro import OpenTelemetryDistro
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)

from plugins.settings import env_choice, env_int, fail_startup

_LOG_FORMATS = ("text", "json")
_PROTOCOLS = ("grpc", "http/protobuf")


def _names(variable: str) -> list[str]:
    return [name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()]


def _known(group: str) -> list[str]:
    return sorted({point.name for point in entry_points(group=group)})


def check_settings() -> None:
    """Stop at start-up, naming the setting, on a value that cannot work. The exporter's settings count only where
    spans are exported (not with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none)."""
    sampler = os.environ.get("OTEL_TRACES_SAMPLER", "").strip()
    samplers = _known("opentelemetry_traces_sampler")
    if sampler and sampler not in samplers:
        fail_startup(f"OTEL_TRACES_SAMPLER={sampler!r} must be one of: {', '.join(samplers)}")
    exporters = [*_known("opentelemetry_traces_exporter"), "none"]
    for name in _names("OTEL_TRACES_EXPORTER"):
        if name not in exporters:
            fail_startup(f"OTEL_TRACES_EXPORTER={name!r} must be one of: {', '.join(exporters)}")
    exporting = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true" and _names(
        "OTEL_TRACES_EXPORTER"
    ) != ["none"]
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
    if exporting and protocol and protocol not in _PROTOCOLS:
        fail_startup(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} must be one of: {', '.join(_PROTOCOLS)}")
    for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        endpoint = os.environ.get(variable, "").strip()
        if exporting and endpoint and "://" not in endpoint:
            fail_startup(f"{variable}={endpoint!r} must be a URL such as http://localhost:4318")
    env_choice("LOG_FORMAT", "text", _LOG_FORMATS)
    env_int("PORT", 0, minimum=0)


class _NoPropagation(TextMapPropagator):
    """`OTEL_PROPAGATORS=none`: nothing read, nothing written. OpenTelemetry's own "none" is a composite of no
    propagators, whose extract returns the context it was given, None when given none, which FastAPI's telemetry
    then attaches as the current context and every later lookup fails on. Delete when CompositePropagator([])
    returns a Context (opentelemetry-api) or FastAPI checks what it attaches."""

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        return Context() if context is None else context

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        return None

    @property
    def fields(self) -> set[str]:
        return set()


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
        if _names("OTEL_PROPAGATORS") == ["none"]:
            propagate.set_global_textmap(_NoPropagation())
