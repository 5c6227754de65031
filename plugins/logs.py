"""The services' logging configuration (plugins/logging.yaml, named by `UVICORN_LOG_CONFIG`). Logging that joins
traces: every record written inside a span carries its trace and span ids
(`OTEL_PYTHON_LOG_CORRELATION=false`, the standard variable, leaves them out; `make bench` measures that layer).

`LOG_FORMAT=text` (default) reads like the article's output; `LOG_FORMAT=json` writes one JSON object a line
for log pipelines. `LOG_LEVEL` sets the level (default INFO).

Log lines cannot be forged: every string interpolated into a record (`log.info("... %s", value)`) is escaped
(line breaks, control and other invisible characters as `\\n`, `\\x1b`, `\\u2028`) and cut at
`VALUE_LIMIT` characters by a filter on the handler, whatever the value is and whoever logs it. Multi-line
blocks (the article's header and event blocks) are built as `Block`s from values that `escape()` already
made safe, so their own line breaks stay.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Mapping

from opentelemetry import trace

from plugins.cloudevents import describe_sdk_event
from plugins.escaping import MASK, Block, escape
from plugins.header_logging import format_headers
from plugins.settings import env_bool, env_choice, env_str

_NO_TRACE = "0" * 32
_NO_SPAN = "0" * 16


class _EscapeValues(logging.Filter):
    """Escapes and caps every string argument of every record (see the module's docstring); numbers are kept
    for `%d` and `%.1f`. The baggage propagator's warnings quote the caller's header or entries, which may
    carry credentials: their values are masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.args:
            return True
        mask = record.name.startswith("opentelemetry.baggage")
        if isinstance(record.args, Mapping):  # log.info("%(name)s", {"name": ...})
            record.args = {key: _safe_arg(arg, mask) for key, arg in record.args.items()}
        else:
            record.args = tuple(_safe_arg(arg, mask) for arg in record.args)
        return True


def _safe_arg(arg: object, mask: bool) -> object:
    if isinstance(arg, bool | int | float):
        return arg
    if mask:
        return MASK
    if isinstance(arg, Block):
        return arg
    return escape(arg)


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

    def __init__(self, prefix: tuple[str, ...] = ("opentelemetry", "plugins.server"), interval: float = 30.0) -> None:
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


class _ServiceFormatter(logging.Formatter):
    """A formatter that names the service on every record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service


class _TextFormatter(_ServiceFormatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        trace_id, span_id = _ids(record)
        ids = f" trace_id={trace_id} span_id={span_id}" if trace_id != _NO_TRACE else ""
        text = f"{stamp} {self._service:<6} {record.levelname:<7}{ids} {record.getMessage()}{_extras(record)}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _JsonFormatter(_ServiceFormatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage() + _extras(record),
        }
        trace_id, span_id = _ids(record)
        if trace_id != _NO_TRACE:
            entry["trace_id"] = trace_id
            entry["span_id"] = span_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _extras(record: logging.LogRecord) -> str:
    """The blocks an app hands over with `extra=`: the request headers (`http_headers`, credentials masked) and a
    CloudEvent (`cloudevent`, the article's block, extensions masked). Apps run without this configuration log
    only their message, so neither can leak where nothing masks it."""
    text = ""
    headers = getattr(record, "http_headers", None)
    if headers is not None:
        text += format_headers("", headers)  # "\n\tName: value" a header, after the app's title
    event = getattr(record, "cloudevent", None)
    if event is not None:
        text += " " + describe_sdk_event(event)  # "Context Attributes, ..." after the app's "Event received:"
    return text


class ServiceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler of every service (plugins/logging.yaml): standard output, trace ids, escaped values,
    OpenTelemetry's own warnings rate-limited, `LOG_FORMAT` text (default) or json, `LOG_LEVEL` (default INFO),
    the service named by OTEL_SERVICE_NAME."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        service = env_str("OTEL_SERVICE_NAME", env_str("K_SERVICE", "service"))
        fmt = env_choice("LOG_FORMAT", "text", ("text", "json"))
        # On by default, unlike the logging instrumentation's default: the demo promises ids on its lines.
        if env_bool("OTEL_PYTHON_LOG_CORRELATION", True):
            self.addFilter(_TraceIds())
        self.addFilter(_EscapeValues())
        self.addFilter(_RateLimited())
        self.setFormatter(_JsonFormatter(service) if fmt == "json" else _TextFormatter(service))
        # The root logger's level: set here, since a logging configuration file cannot read the environment.
        logging.getLogger().setLevel(env_str("LOG_LEVEL", "INFO").upper())
