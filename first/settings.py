"""first's own settings (the OTEL_* ones are read by common.telemetry)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from common.settings import env_choice, env_float, env_str, fail_startup

LOCAL_BROKER = "http://127.0.0.1:8082/default/default"


@dataclass(frozen=True)
class Settings:
    sink: str
    """Where events go: K_SINK, set by Knative's SinkBinding; locally the local broker's ingress."""
    mode: str
    """CloudEvents HTTP content mode: binary (Knative's default) or structured."""
    connect_timeout: float
    timeout: float

    @classmethod
    def from_env(cls) -> Settings:
        sink = env_str("K_SINK", LOCAL_BROKER)
        parts = urlsplit(sink)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            fail_startup(f"K_SINK={sink!r} must be an http(s) URL such as {LOCAL_BROKER}")
        return cls(
            sink=sink,
            mode=env_choice("EVENT_MODE", "binary", ("binary", "structured")),
            connect_timeout=env_float("SINK_CONNECT_TIMEOUT", 2.0, minimum=0.01),
            timeout=env_float("SINK_TIMEOUT", 5.0, minimum=0.01),
        )
