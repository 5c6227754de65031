"""first's own settings (the OTEL_* ones are read by common/tracing/setup.py)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from common.service.settings import env_bool, env_choice, env_float, env_str, fail_startup

LOCAL_BROKER = "http://127.0.0.1:8082/default/default"


@dataclass(frozen=True)
class Settings:
    sink: str
    """Where events go: K_SINK, set by Knative's SinkBinding; locally the local broker's ingress."""
    mode: str
    """CloudEvents HTTP content mode: binary (Knative's default) or structured."""
    connect_timeout: float
    timeout: float
    propagate_context: bool = True
    """PROPAGATE_CONTEXT=false (a workshop switch) sends events with no trace context: the trace breaks in two."""
    trace_extension: bool = False
    """EVENT_TRACE_EXTENSION=true also writes the CloudEvents Distributed Tracing extension (traceparent)."""

    @classmethod
    def from_env(cls) -> Settings:
        sink = env_str("K_SINK", LOCAL_BROKER)
        parts = urlsplit(sink)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            fail_startup(f"K_SINK={sink!r} must be an http(s) URL such as {LOCAL_BROKER}")
        propagate_context = env_bool("PROPAGATE_CONTEXT", True)
        return cls(
            sink=sink,
            mode=env_choice("EVENT_MODE", "binary", ("binary", "structured")),
            connect_timeout=env_float("SINK_CONNECT_TIMEOUT", 2.0, minimum=0.01),
            timeout=env_float("SINK_TIMEOUT", 5.0, minimum=0.01),
            propagate_context=propagate_context,
            # No context at all means none in the event either.
            trace_extension=propagate_context and env_bool("EVENT_TRACE_EXTENSION", False),
        )
