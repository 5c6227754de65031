"""`make verify`'s shape check: passes on whole traces, names the hop on traces with a hop missing or the chain
broken. Jaeger query-API answers are fixtures of our own (tests/fixtures/jaeger/), served over real HTTP."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import complete_trace
from tools.hops import KNATIVE_HOPS, LOCAL_HOPS, _best_chain, check, likely_causes
from tools.jaeger import spans_from_jaeger
from tools.otlp_receiver import Receiver
from tools.spans import Span
from tools.stack import ROOT, Stack, free_port, wait_healthy
from tools.verify_trace import main

FIXTURES = ROOT / "tests" / "fixtures" / "jaeger"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
"""The trace id of every fixture."""


def fixture(name: str) -> list[Span]:
    return spans_from_jaeger(json.loads((FIXTURES / f"{name}.json").read_text()))


@pytest.mark.parametrize(("name", "count"), [("knative-complete", 32), ("knative-1.18-complete", 25)])
def test_a_whole_knative_trace_passes(name: str, count: int) -> None:
    spans = fixture(name)
    assert len(spans) == count
    assert check(spans, KNATIVE_HOPS) == []


SOURCE_FACTS = json.loads((ROOT / "tests" / "fixtures" / "knative" / "otel-spans-1.22.json").read_text())
"""What Knative 1.22 emits on the demo's path, read from its source (each entry cites the line)."""
WORKLOAD_SCOPES = {"fastapi", "broker.client_span", "first", "second"}


def _source_fact(span: Span) -> tuple[str, str] | None:
    """(component, span name pattern) of the recorded fact `span` is, or None when no fact matches it."""
    scope = span.attributes.get("otel.scope.name")
    for component in SOURCE_FACTS["components"]:
        if not re.search(component["service.name"], span.service):
            continue
        for fact in component["spans"]:
            if re.search(fact["name"], span.name) and fact["kind"] == span.kind and fact["scope"] == scope:
                return component["component"], fact["name"]
    return None


def test_the_knative_fixture_holds_exactly_the_spans_the_1_22_source_names() -> None:
    knative = [s for s in fixture("knative-complete") if s.attributes.get("otel.scope.name") not in WORKLOAD_SCOPES]
    unknown = [f"{s.service}: {s.name} ({s.kind})" for s in knative if _source_fact(s) is None]
    assert not unknown, f"spans no Knative 1.22 source line names: {unknown}"
    seen = {_source_fact(s) for s in knative}
    recorded = {(c["component"], f["name"]) for c in SOURCE_FACTS["components"] for f in c["spans"]}
    assert recorded <= seen, f"recorded spans missing from the fixture: {recorded - seen}"


@pytest.mark.parametrize(
    ("label", "component"),
    [
        ("activator in front of first", "activator"),
        ("queue-proxy in front of first", "queue-proxy"),
        ("broker ingress accepts it", "broker ingress"),
        ("in-memory channel dispatcher passes it on", "in-memory channel dispatcher"),
        ("broker filter delivers it (Trigger first-to-second)", "broker filter"),
    ],
)
def test_each_knative_hop_is_placed_on_a_span_the_source_names(label: str, component: str) -> None:
    """Run on the fixture, each Knative hop lands on a span of the component the 1.22 source says emits it."""
    spans = fixture("knative-complete")
    index = next(i for i, hop in enumerate(KNATIVE_HOPS) if hop.label == label)
    placed = _best_chain(spans, KNATIVE_HOPS)[index]
    fact = _source_fact(placed)
    assert fact is not None and fact[0] == component, f"{label} placed on {placed.service}: {placed.name}"


def test_the_queue_proxy_hop_never_takes_a_workload_span() -> None:
    hop = next(hop for hop in KNATIVE_HOPS if hop.label == "queue-proxy in front of second")
    workload = [
        s
        for s in fixture("knative-complete")
        if s.service == "second" and s.attributes.get("otel.scope.name") in WORKLOAD_SCOPES
    ]
    assert workload and not [s for s in workload if hop.matches(s)]


def test_a_missing_hop_is_named() -> None:
    (problem,) = check(fixture("knative-missing-trigger"), KNATIVE_HOPS)
    assert problem.startswith("missing hop 'broker filter delivers it (Trigger first-to-second)'")
    assert "after 'in-memory channel dispatcher passes it on' before 'activator in front of second'" in problem


def test_the_workloads_own_spans_never_stand_in_for_its_queue_proxy() -> None:
    """Since Knative 1.19 the queue-proxy reports under the workload's name; only the scope tells them apart."""
    spans = fixture("knative-missing-queue-proxy")
    assert [s for s in spans if s.service == "second" and s.kind == "SERVER"], "second's own server span is there"
    (problem,) = check(spans, KNATIVE_HOPS)
    assert problem.startswith("missing hop 'queue-proxy in front of second'")
    assert "after 'activator in front of second' before 'second processes the event'" in problem


def test_a_broken_chain_names_the_hop_and_where_the_parents_stop() -> None:
    missing, problem = check(fixture("knative-broken-chain"), KNATIVE_HOPS)
    assert missing.startswith("missing hop 'in-memory channel dispatcher passes it on'")
    assert problem.startswith("chain broken at hop 'broker filter delivers it (Trigger first-to-second)'")
    # The broker filter's server spans name the in-memory channel dispatcher's client span as their parent.
    assert (
        "its ancestry stops at 'POST /triggers/default/first-to-second/6f1c2e8a-3b7d-4c51-9a0e-2d4f8b7c1e93' of "
        "broker.filter, whose parent a000000000012221 is not in the trace"
    ) in problem
    # The hops under the break are reported with it, not as separate failures.
    assert "cut off with it: 'activator in front of second', 'queue-proxy in front of second'" in problem


def test_a_dispatcher_that_records_nothing_is_a_missing_hop() -> None:
    """A no-op tracer passes the incoming context on unchanged: without its own hop, a dispatcher with tracing
    off would leave a whole trace behind (the filter's spans right under the ingress's)."""
    spans = spliced_out(fixture("knative-complete"), "inmemorychannel-dispatcher")
    (problem,) = check(spans, KNATIVE_HOPS)
    assert problem.startswith("missing hop 'in-memory channel dispatcher passes it on'")
    (cause,) = likely_causes(spans, KNATIVE_HOPS)
    assert "tracing is off in that component" in cause
    assert "kubectl -n knative-eventing rollout restart deployment/imc-dispatcher" in cause


def _server_parents(spans: list[Span], service: str) -> dict[str, str | None]:
    return {s.name: s.parent_id for s in spans if s.service == service and s.kind == "SERVER"}


@pytest.mark.parametrize("service", ["broker.ingress", "broker.filter"])
def test_the_fixture_has_a_brokers_two_server_spans_side_by_side(service: str) -> None:
    """Two otelhttp handlers (kncloudevents.receive, then the broker's own) each extract the incoming headers
    (eventing pkg/kncloudevents/event_receiver.go CreateHandler, pkg/observability/otel/handler.go; otelhttp's
    handler starts its span from propagators.Extract): both spans are children of the caller's."""
    parents = _server_parents(fixture("knative-complete"), service)
    assert len(parents) == 2 and len(set(parents.values())) == 1, parents


def test_sampling_that_drops_the_broker_is_named_as_the_likely_cause() -> None:
    """tracing-sampling-rate 0 in knative-eventing, 1 in knative-serving: the eventing components record
    nothing and pass the context on not sampled; the activator in front of second samples every request again,
    so second's half is in the trace, hanging off the broker filter's unrecorded span (users' "split in two")."""
    spans = fixture("knative-sampling-off")
    problems = check(spans, KNATIVE_HOPS)
    assert [p.split(":")[0] for p in problems] == [
        "missing hop 'broker ingress accepts it'",
        "missing hop 'in-memory channel dispatcher passes it on'",
        "missing hop 'broker filter delivers it (Trigger first-to-second)'",
        "chain broken at hop 'activator in front of second'",
    ]
    (cause,) = likely_causes(spans, KNATIVE_HOPS)
    assert "sampled out, tracing-sampling-rate 0 or missing in config-observability of knative-eventing" in cause
    assert "NeverSample, not parent-based" in cause


def test_sampling_at_the_first_hop_is_named_for_knative_serving() -> None:
    """tracing-sampling-rate 0 in knative-serving only: the activator, the root, records nothing and first follows
    its parent; the broker ingress, at rate 1, samples again, so the trace starts at the broker."""
    spans = fixture("knative-complete")
    ingress = min(s.start_ns for s in spans if s.service == "broker.ingress")
    from_the_broker = [s for s in spans if s.start_ns >= ingress and s.service not in ("first",)]
    (cause,) = likely_causes(from_the_broker, KNATIVE_HOPS)
    assert "sampled out, tracing-sampling-rate 0 or missing in config-observability of knative-serving" in cause


def test_a_trace_that_ends_names_a_hop_that_does_not_propagate() -> None:
    first_half = [s for s in fixture("knative-sampling-off") if s.start_ns < _second_half_start()]
    (cause,) = likely_causes(first_half, KNATIVE_HOPS)
    assert cause.startswith("the trace ends before 'broker ingress accepts it'")
    assert "did not propagate the context" in cause and "UNTRACED_HOP=1" in cause


def _second_half_start() -> int:
    spans = fixture("knative-sampling-off")
    return min(s.start_ns for s in spans if s.service == "activator" and s.parent_id is not None and s.kind == "SERVER")


def test_no_trace_at_all_names_sampling_at_the_first_hop() -> None:
    causes = likely_causes([], KNATIVE_HOPS)
    assert any("knative-serving" in cause and "NeverSample" in cause for cause in causes)


def spliced_out(spans: list[Span], service: str) -> list[Span]:
    """The trace as it looks when `service` records nothing: its spans' children hang off their grandparents."""
    by_id = {s.span_id: s for s in spans}

    def kept_parent(parent_id: str | None) -> str | None:
        while parent_id in by_id and by_id[parent_id].service == service:
            parent_id = by_id[parent_id].parent_id
        return parent_id

    return [dataclasses.replace(s, parent_id=kept_parent(s.parent_id)) for s in spans if s.service != service]


def test_knative_hops_need_knative_in_front_of_each_workload() -> None:
    spans = spliced_out(fixture("knative-complete"), "activator")
    problems = check(spans, KNATIVE_HOPS)
    assert [p.split(":")[0] for p in problems] == [
        "missing hop 'activator in front of first'",
        "missing hop 'activator in front of second'",
    ]


def test_spans_of_two_traces_are_not_one_trace() -> None:
    spans = fixture("knative-complete")
    other = dataclasses.replace(spans[-1], trace_id="f" * 32)
    problems = check([*spans[:-1], other], KNATIVE_HOPS)
    assert problems[0].startswith("the spans belong to 2 traces")


def test_no_spans_at_all() -> None:
    assert check([], LOCAL_HOPS) == ["no spans: the trace backend does not know this trace (yet)"]


def test_local_hops_pass_on_a_real_trace_through_the_local_broker(stack: Stack, receiver: Receiver) -> None:
    reply = httpx.get(stack.url("first") + "/", timeout=10)
    assert reply.status_code == 200, reply.text
    spans = complete_trace(receiver, reply.json()["trace_id"])
    assert check(spans, LOCAL_HOPS) == []
    # The same trace lacks Knative's hops: the checker tells the two paths apart.
    assert any(p.startswith("missing hop 'activator in front of first'") for p in check(spans, KNATIVE_HOPS))


@pytest.fixture(scope="module")
def jaeger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out like Jaeger's query API: /api/traces/<trace id> answers with a fixture."""
    root = tmp_path_factory.mktemp("jaeger")
    (root / "api" / "traces").mkdir(parents=True)
    return root


def _serve(directory: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(directory)]


@pytest.fixture(scope="module")
def fake_jaeger(jaeger_dir: Path) -> Iterator[str]:
    """A real HTTP server answering with the fixture currently in `jaeger_dir`."""
    port = free_port()
    process = subprocess.Popen(_serve(jaeger_dir, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url + "/", 10, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=5)


def _answer_with(jaeger_dir: Path, name: str) -> None:
    shutil.copyfile(FIXTURES / f"{name}.json", jaeger_dir / "api" / "traces" / TRACE_ID)


def test_cli_passes_and_prints_the_tree(fake_jaeger: str, jaeger_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _answer_with(jaeger_dir, "knative-complete")
    assert main(["--trace-id", TRACE_ID, "--query-url", fake_jaeger, "--timeout", "0"]) == 0
    out = capsys.readouterr().out
    assert "broker.ingress: broker:default.default" in out
    assert "second: process dev.knative.tracing.hello" in out
    assert "OK: all 9 hops in one trace, in order" in out


def test_cli_fails_naming_the_missing_hop(
    fake_jaeger: str, jaeger_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _answer_with(jaeger_dir, "knative-missing-trigger")
    id_file = tmp_path / "last-trace-id"
    id_file.write_text(TRACE_ID.upper() + "\n")
    assert main(["--trace-id-file", str(id_file), "--query-url", fake_jaeger, "--timeout", "0"]) == 1
    assert "FAIL: missing hop 'broker filter delivers it" in capsys.readouterr().err


def test_cli_names_sampling_as_the_likely_cause(
    fake_jaeger: str, jaeger_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _answer_with(jaeger_dir, "knative-sampling-off")
    assert main(["--trace-id", TRACE_ID, "--query-url", fake_jaeger, "--timeout", "0"]) == 1
    err = capsys.readouterr().err
    assert "FAIL: missing hop 'broker ingress accepts it'" in err
    assert "Likely causes:\n  - " in err
    assert "tracing-sampling-rate 0 or missing in config-observability of knative-eventing" in err


def test_cli_reads_jaeger_through_a_port_forward_command(jaeger_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`make verify` hands a kubectl port-forward command; here a real local server stands in for it."""
    _answer_with(jaeger_dir, "knative-1.18-complete")
    command = " ".join(_serve(jaeger_dir, 0)).replace(" 0 --bind", " {port} --bind")
    assert main(["--trace-id", TRACE_ID, "--port-forward", command, "--timeout", "0"]) == 0
    assert "OK: all 9 hops" in capsys.readouterr().out


def test_cli_explains_a_port_forward_that_fails(capsys: pytest.CaptureFixture[str]) -> None:
    command = f'{sys.executable} -c "import sys; sys.exit(\'error: services \\"jaeger-query\\" not found\')"'
    assert main(["--trace-id", TRACE_ID, "--port-forward", command, "--timeout", "0"]) == 2
    err = capsys.readouterr().err
    assert "port-forward failed" in err and 'services "jaeger-query" not found' in err


def test_cli_without_a_demo_trace_says_to_run_make_demo(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="run `make demo` first"):
        main(["--trace-id-file", str(tmp_path / "nothing"), "--query-url", "http://127.0.0.1:9"])


def test_cli_rejects_a_malformed_trace_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--trace-id", "xyz", "--query-url", "http://127.0.0.1:9"]) == 2
    assert "is not a 32-hex trace id" in capsys.readouterr().err
