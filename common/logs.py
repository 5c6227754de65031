"""Logging that joins traces: every record written inside a span carries its trace and span ids.

`LOG_FORMAT=text` (default) reads like the article's output; `LOG_FORMAT=json` writes one JSON object a line
for log pipelines. `LOG_LEVEL` sets the level (default INFO).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

from opentelemetry import trace

from common.settings import env_choice, env_str

_NO_TRACE = "0" * 32
_NO_SPAN = "0" * 16


class _TraceIds(logging.Filter):
    """Stamps the current span's ids on each record (the names OpenTelemetry's logging instrumentation uses)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.otelTraceID = format(ctx.trace_id, "032x")
            record.otelSpanID = format(ctx.span_id, "016x")
        else:
            record.otelTraceID = _NO_TRACE
            record.otelSpanID = _NO_SPAN
        return True


class _RateLimited(logging.Filter):
    """At most one record a message per `interval` from OpenTelemetry's own loggers (exporters, batch
    processor): with the trace backend down or hanging they would log on every batch and every retry. The
    record that gets through after a quiet spell says how many were held back."""

    def __init__(self, prefix: str = "opentelemetry", interval: float = 30.0) -> None:
        super().__init__()
        self._prefix = prefix
        self._interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()  # the exporter's thread logs too

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefix):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.getMessage()} ({held} more like this not logged in the last {self._interval:.0f}s)"
            record.args = None
        return True


def _ids(record: logging.LogRecord) -> tuple[str, str]:
    return getattr(record, "otelTraceID", _NO_TRACE), getattr(record, "otelSpanID", _NO_SPAN)


class _TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        trace_id, span_id = _ids(record)
        ids = f" trace_id={trace_id} span_id={span_id}" if trace_id != _NO_TRACE else ""
        text = f"{stamp} {self._service:<6} {record.levelname:<7}{ids} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id, span_id = _ids(record)
        if trace_id != _NO_TRACE:
            entry["trace_id"] = trace_id
            entry["span_id"] = span_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(service: str) -> None:
    """Route the root logger (and uvicorn's) through one handler with trace ids."""
    fmt = env_choice("LOG_FORMAT", "text", ("text", "json"))
    level = env_str("LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_TraceIds())
    handler.addFilter(_RateLimited())
    handler.setFormatter(_JsonFormatter(service) if fmt == "json" else _TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every request at INFO; the services log what matters about each send themselves.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # One access line per request adds nothing to the article's own lines and costs time on the hot path.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
