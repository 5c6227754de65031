"""Logging that joins traces: every record written inside a span carries its trace and span ids
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
import re
import sys
import threading
import time
from collections.abc import Mapping

from opentelemetry import trace

from common.service.settings import env_bool, env_choice, env_str

_NO_TRACE = "0" * 32
_NO_SPAN = "0" * 16

VALUE_LIMIT = 1024
"""The most characters of one client-controlled value a log line shows; the rest is summarised."""
MASK = "***"
# What could end a line or hide text in a terminal or a log viewer: C0/C1 controls (CR, LF, ESC...), Unicode
# line and paragraph separators, zero-width and bidirectional controls, the BOM, lone surrogates; and the
# backslash, so that an escape sequence cannot be faked. Everything else (accents, emoji) stays readable.
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]")


class Block(str):
    """A multi-line log text assembled from escaped values: the escaping filter leaves it as it is."""


def escape(value: object, limit: int = VALUE_LIMIT) -> str:
    """`value` as text that stays on its line: cut at `limit` characters (the cut said), then every character
    that is not printable (and the backslash, so an escape cannot be faked) written as a Python escape."""
    text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)
    cut = ""
    if len(text) > limit:
        cut = f"... ({len(text)} characters in all)"
        text = text[:limit]
    return _UNSAFE.sub(_escaped, text) + cut


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x5C:
        return "\\\\"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


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

    def __init__(
        self, prefix: tuple[str, ...] = ("opentelemetry", "common.service.server"), interval: float = 30.0
    ) -> None:
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
        text = f"{stamp} {self._service:<6} {record.levelname:<7}{ids} {record.getMessage()}"
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
    # On by default, unlike the logging instrumentation's default: the demo promises ids on its lines.
    if env_bool("OTEL_PYTHON_LOG_CORRELATION", True):
        handler.addFilter(_TraceIds())
    handler.addFilter(_EscapeValues())
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
