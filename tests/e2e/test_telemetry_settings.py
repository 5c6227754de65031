"""The standard OTEL_* variables, each checked on a real process exporting over real OTLP."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import cloudevent_headers, poll_until, running
from tools.otlp_receiver import Receiver
from tools.spans import Span
from tools.stack import ROOT, service_environment


def _send_event(url: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    sent = cloudevent_headers(**(headers or {}))
    reply = httpx.post(url + "/", headers=sent, content=b"hello", timeout=5)
    assert reply.status_code == 204, reply.text
    return sent


def _spans_of_trace(receiver: Receiver, trace_id: str, count: int = 1) -> list[Span]:
    return poll_until(
        lambda: found if len(found := receiver.spans(trace_id)) >= count else None,
        10,
        f"{count} span(s) of trace {trace_id} at the receiver",
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OTEL_SERVICE_NAME": "renamed"}, "renamed"),
        ({"K_SERVICE": "second-from-knative"}, "second-from-knative"),
        ({"OTEL_SERVICE_NAME": "wins", "K_SERVICE": "loses"}, "wins"),
        ({}, "second"),
    ],
)
def test_service_name(receiver: Receiver, tmp_path: Path, env: dict[str, str], expected: str) -> None:
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    clean = {"OTEL_SERVICE_NAME": "", "K_SERVICE": ""}
    with running("second", {**base, **clean, **env}, tmp_path) as second:
        trace_id = secrets.token_hex(16)
        _send_event(second.url, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
        spans = _spans_of_trace(receiver, trace_id, 2)
    assert {s.service for s in spans} == {expected}


def test_grpc_protocol(tmp_path: Path) -> None:
    receiver = Receiver(grpc_port=0).start()
    try:
        env = {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.grpc_port}",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        with running("second", env, tmp_path) as second:
            trace_id = secrets.token_hex(16)
            _send_event(second.url, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
            spans = _spans_of_trace(receiver, trace_id, 2)
        assert {s.kind for s in spans} == {"SERVER", "CONSUMER"}
    finally:
        receiver.stop()


def test_sdk_disabled_makes_no_spans_but_passes_context_through(receiver: Receiver, tmp_path: Path) -> None:
    """first with OTEL_SDK_DISABLED=true posts the caller's traceparent on to a real downstream."""
    env_second = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    with running("second", env_second, tmp_path) as second:
        env_first = {
            "OTEL_SDK_DISABLED": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "K_SINK": second.url + "/",
        }
        with running("first", env_first, tmp_path) as first:
            trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
            reply = httpx.get(first.url + "/", headers={"traceparent": f"00-{trace_id}-{parent}-01"}, timeout=5)
            assert reply.status_code == 200, reply.text
            assert reply.json()["trace_id"] == trace_id
            spans = _spans_of_trace(receiver, trace_id, 2)
    # Only second's spans: first made none, yet second continued the caller's trace, parented on the caller.
    assert {s.service for s in spans} == {"second"}
    server = next(s for s in spans if s.kind == "SERVER")
    assert server.parent_id == parent


def test_sampler_always_off_records_nothing(receiver: Receiver, tmp_path: Path) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_SAMPLER": "always_off"}
    with running("second", env, tmp_path) as second:
        trace_id = secrets.token_hex(16)
        _send_event(second.url, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
    # The process has exited, so its batch processor was flushed: nothing to wait for.
    assert receiver.spans(trace_id) == []


def test_console_exporter_writes_spans_to_stdout(tmp_path: Path) -> None:
    with running("second", {"OTEL_TRACES_EXPORTER": "console"}, tmp_path) as second:
        sent = _send_event(second.url)
        log_path = second.log_path
    assert log_path is not None
    output = log_path.read_text()
    assert '"name": "process dev.knative.tracing.hello"' in output
    assert sent["ce-id"] in output


def test_bsp_settings_are_honoured(receiver: Receiver, tmp_path: Path) -> None:
    """A 60 s schedule delay and a big batch: nothing is exported until shutdown flushes it."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512",
    }
    trace_id = secrets.token_hex(16)
    with running("second", env, tmp_path) as second:
        _send_event(second.url, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
        with pytest.raises(AssertionError, match="Timed out"):
            poll_until(lambda: receiver.spans(trace_id), 1, "spans held back by the batch delay")
    assert len(receiver.spans(trace_id)) == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER='jaeger' must be one of: console, otlp, otlp_lean,"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL='http/json' must be one of"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER='sometimes' must be one of: always_off,"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"}, "must be a URL"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml' must be one of: text, json"),
        ({"PORT": "eighty"}, "PORT='eighty' is not a whole number"),
    ],
)
def test_bad_settings_stop_startup_with_a_clear_message(tmp_path: Path, env: dict[str, str], message: str) -> None:
    result = _start_second(env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def _start_second(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "second"],
        check=False,
        cwd=ROOT,
        env={**os.environ, **service_environment("second"), **env},
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_an_unknown_propagator_stops_startup_naming_it() -> None:
    """OpenTelemetry reads OTEL_PROPAGATORS as its API is imported, before the distro's checks can run: its own
    error, with its traceback, names the propagator."""
    result = _start_second({"OTEL_PROPAGATORS": "tracecontext_strict,xray"})
    assert result.returncode != 0
    assert "Propagator xray not found" in result.stderr
