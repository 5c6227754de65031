"""`make run`'s switches for the Knative lessons, run as a user types them: which trace headers travel (W3C by
default, B3 as well with B3=1), and SAMPLING=0, the broker sampling as Knative does with tracing-sampling-rate 0.

The headers are read where they cross a hop: the untraced hop (UNTRACED_HOP=1, between the broker and second)
logs the name of every trace header it drops, that is every one the broker sent."""

from __future__ import annotations

import re
import subprocess

import pytest

from tools.stack import ROOT, free_port

TRACE_HEADER = re.compile(r"dropped (.*)$", re.M)


def make_run(*switches: str) -> subprocess.CompletedProcess[str]:
    flags = f"--once --port {free_port(4)} --otlp-port {free_port()}"
    return subprocess.run(
        ["make", "--no-print-directory", "run", *switches, f"RUN_FLAGS={flags}"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _dropped(output: str) -> set[str]:
    (found,) = TRACE_HEADER.findall(output)
    return set(found.split(", "))


def test_make_run_sends_w3c_only_by_default() -> None:
    """OpenTelemetry's default propagators (tracecontext,baggage), as Knative >= 1.19 reads and writes them."""
    result = make_run("UNTRACED_HOP=1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _dropped(result.stdout) == {"traceparent"}, result.stdout


def test_b3_switch_sends_b3_as_well() -> None:
    result = make_run("UNTRACED_HOP=1", "B3=1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all three: OTEL_PROPAGATORS=b3multi_strict,tracecontext_strict,baggage" in result.stdout
    assert _dropped(result.stdout) == {"traceparent", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled"}


def test_sampling_0_ends_the_trace_at_the_broker_and_says_why() -> None:
    result = make_run("SAMPLING=0")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "broker: OTEL_TRACES_SAMPLER=always_off (Knative's sampler for tracing-sampling-rate 0)" in out
    # first's three spans, none of the broker's or second's ...
    tree = re.search(r"trace ([0-9a-f]{32})  \((\d+) spans", out)
    assert tree and tree.group(2) == "3", out
    spans = [line for line in out.split(tree.group(0))[1].splitlines() if "|" in line and " ms " in line]
    assert len(spans) == 3 and all(line.lstrip("└─ ").startswith("first: ") for line in spans), spans
    # ... though second got the event, and logged it under the same trace id.
    trace_id = tree.group(1)
    assert re.search(rf"second INFO +trace_id={trace_id} .*processed event", out), out
    assert "Why the trace ends at the broker" in out and "NeverSample, which is not parent-based" in out
    assert "the event did reach second" in out


@pytest.mark.parametrize("rate", ["2", "zero"])
def test_a_sampling_rate_knative_would_refuse_is_refused(rate: str) -> None:
    result = make_run(f"SAMPLING={rate}")
    assert result.returncode == 2
    assert f"{rate!r}: a sampling rate is a number from 0 to 1, as Knative's" in result.stderr
