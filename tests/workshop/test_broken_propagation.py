"""PROPAGATE_CONTEXT=false, the article's lesson done wrong on purpose: first sends its event with no trace
context, so one request becomes two traces, first's and the broker's + second's."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import httpx
import pytest

from tests.faults.peers import Peer
from tools.event_traces import wait_for_event
from tools.otlp_receiver import Receiver
from tools.spans import Span
from tools.stack import ROOT, Service

TRACE_HEADERS = {"traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled"}
EXTENSION_HEADERS = {"ce-traceparent", "ce-tracestate"}


def _names(trace: list[Span]) -> list[tuple[str, str, str]]:
    return sorted((s.service, s.kind, s.name) for s in trace)


def test_broken_switch_splits_the_journey_into_two_traces(lone: dict[str, Service], receiver: Receiver) -> None:
    reply = httpx.get(lone["broken-e2e"].url + "/", timeout=10)
    assert reply.status_code == 200, reply.text
    trace_id, event_id = reply.json()["trace_id"], reply.json()["event_id"]

    traces = wait_for_event(receiver, event_id, 10)
    assert traces is not None, f"event {event_id} never reached second: {receiver.spans()}"
    assert len(traces) == 2, f"expected first's trace and the broker's + second's, got {traces}"
    first, rest = traces
    assert first[0].trace_id == trace_id
    # Everything else about first is unchanged: its CLIENT span still wraps the post, it just carries nothing
    # (the httpx instrumentation, which would write the headers itself, stays off).
    assert _names(first) == [
        ("first", "CLIENT", "POST"),
        ("first", "PRODUCER", "send dev.knative.tracing.hello"),
        ("first", "SERVER", "GET /"),
    ]
    assert {s.service for s in rest} == {"broker", "second"}
    roots = [s for s in rest if s.parent_id is None]
    assert [(r.service, r.kind) for r in roots] == [("broker", "SERVER")], "the broker must start a new trace"
    assert ("second", "CONSUMER", "process dev.knative.tracing.hello") in _names(rest)


def test_no_trace_context_leaves_first_at_all(lone: dict[str, Service], sink: Peer) -> None:
    """Not in headers (W3C, B3, baggage) and not in the event, though the extension is asked for too and the
    caller sent a context that first continues."""
    first = lone["broken"]
    caller = {
        "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01",
        "tracestate": "vendor=1",
        "baggage": "user=attendee",
    }
    reply = httpx.get(first.url + "/", headers=caller, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.json()["trace_id"] == caller["traceparent"].split("-")[1], "first itself still joins the caller"
    arrived = sink.at("/broken")[-1]
    leaked = (TRACE_HEADERS | EXTENSION_HEADERS) & set(arrived.headers)
    assert not leaked, f"first sent trace context with PROPAGATE_CONTEXT=false: {leaked}"
    assert arrived.headers["ce-type"] == "dev.knative.tracing.hello", "the event itself still goes out"
    assert "PROPAGATE_CONTEXT=false" in first.log(), "first says at start-up that propagation is off"


@pytest.mark.parametrize("setting", ["PROPAGATE_CONTEXT", "EVENT_TRACE_EXTENSION"])
def test_a_switch_that_is_neither_true_nor_false_stops_first_naming_it(setting: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "first"],
        cwd=ROOT,
        env={**os.environ, setting: "maybe", "OTEL_TRACES_EXPORTER": "none", "PORT": "0"},
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert f"{setting}='maybe' must be true or false" in done.stderr
