"""`make up`'s last step (tools/compose_up.py) on a real trace of the local stack; Jaeger itself needs Docker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import complete_trace
from tools.compose_up import ComposeUpError, report, send_request
from tools.hops import LOCAL_HOPS, check
from tools.otlp_receiver import Receiver
from tools.stack import ROOT, Stack, free_port, start_service, wait_healthy

JAEGER = "http://127.0.0.1:16686"


def test_report_prints_the_tree_and_the_jaeger_link_of_a_complete_trace(stack: Stack, receiver: Receiver) -> None:
    trace_id, error = send_request(stack.url("first"))
    assert error is None
    spans = complete_trace(receiver, trace_id)
    problems = check(spans, LOCAL_HOPS)
    assert problems == []
    text = report(spans, problems, trace_id, JAEGER)
    assert f"trace {trace_id}" in text
    assert f"In Jaeger: {JAEGER}/trace/{trace_id}" in text
    for name in ("send dev.knative.tracing.hello", "broker:default.default", "process dev.knative.tracing.hello"):
        assert name in text
    assert "error" not in text


def test_report_names_the_missing_hop(stack: Stack, receiver: Receiver) -> None:
    trace_id, _ = send_request(stack.url("first"))
    spans = complete_trace(receiver, trace_id)
    without_second = [s for s in spans if s.service != "second"]
    text = report(without_second, check(without_second, LOCAL_HOPS), trace_id, JAEGER)
    assert "error: the trace is incomplete:" in text and "make logs" in text
    assert "missing hop 'second processes the event'" in text
    assert "missing hop 'first sends the event'" not in text

    text = report([], check([], LOCAL_HOPS), trace_id, JAEGER)
    assert "Jaeger holds no span" in text and "error: the trace is incomplete:" in text


def test_make_up_says_when_jaeger_is_not_there() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "tools.compose_up", "--jaeger", closed, "--first", closed, "--timeout", "0.5"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert f"Jaeger's query API at {closed}/api/services did not answer" in done.stderr


def test_send_request_says_when_first_is_not_there() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ComposeUpError, match=f"first does not answer at {closed}/"):
        send_request(closed)


def test_send_request_keeps_the_trace_of_a_request_first_could_not_deliver(tmp_path: Path) -> None:
    """first with no broker behind it: the trace id still comes back, with first's error, to show where it broke."""
    port = free_port()
    env = {"K_SINK": f"http://127.0.0.1:{free_port()}/default/default", "OTEL_TRACES_EXPORTER": "none"}
    first = start_service("first", port, env, tmp_path / "first.log")
    try:
        wait_healthy(f"{first.url}/healthz", 30, first.process)
        trace_id, error = send_request(first.url)
    finally:
        first.process.terminate()
        first.process.wait(timeout=20)
    assert len(trace_id) == 32
    assert error is not None and error.startswith("first answered 5"), error
