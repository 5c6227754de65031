"""One request through Knative's real data plane (tools/knative_real.py): first and second behind real
queue-proxies, the event through the real broker ingress, IMC dispatcher and broker filter, built from the
pinned tags. Its trace is checked hop by hop, against tests/fixtures/knative/otel-spans-1.22.json and against
`make verify`'s Knative hop check (the activator excepted: there is none without a cluster).

Needs root (network namespaces) and the binaries. Under CI=true the binaries are built here if they are not
cached yet (`make knative-binaries`, from KNATIVE_SRC as .ci/run sets it) and a missing prerequisite fails;
elsewhere the tests skip, saying why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import Output, poll_until
from tools import knative_real
from tools.hops import KNATIVE_HOPS, OTELHTTP_SCOPE, check
from tools.kube_fixture import KINDS
from tools.spans import Span
from tools.stack import ROOT

pytestmark = pytest.mark.timeout(1200)  # under CI the first test builds the binaries (about 3 min on 2 cores)

CI = os.environ.get("CI") == "true"
FIXTURE = ROOT / "tests" / "fixtures" / "knative" / "otel-spans-1.22.json"
QUEUE_SCOPE = "knative.dev/serving/pkg/queue"
KNCLOUDEVENTS_SCOPE = "knative.dev/eventing/pkg/kncloudevents"
FILTER_PATH = r"/triggers/default/first-to-second/[0-9a-f-]{36}"


def _make_variable(name: str) -> str:
    """A variable as the Makefile resolves it (the pinned versions decide where the binaries are)."""
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", f"print-variable: ; @echo $({name})", "print-variable"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _unavailable(reason: str) -> None:
    if CI:
        pytest.fail(f"{reason} (CI=true: the real data plane must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def binaries() -> Path:
    path = Path(_make_variable("KNATIVE_REAL_BIN"))
    if CI and shutil.which("iptables") is None:
        # A fresh machine of this kind has iproute2 but not iptables, which the pods' port rewrites need: as root,
        # from Debian's packages, as the container tests install Podman.
        apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=apt, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "iptables"], check=True, env=apt, timeout=600)
    if CI and not all((path / name).is_file() for name in knative_real.BINARIES):
        subprocess.run(["make", "--no-print-directory", "knative-binaries"], cwd=ROOT, check=True)
    try:
        knative_real.preflight(path)
    except knative_real.Unavailable as unavailable:
        _unavailable(str(unavailable))
    return path


@dataclass(frozen=True)
class Run:
    trace: list[Span]
    """One request's trace, whole (every span's parent arrived, the late kncloudevents.receive spans too)."""
    asked: set[str]
    """The resources the binaries asked the fixture API for, by then."""


@pytest.fixture(scope="module")
def run(binaries: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    with knative_real.running(binaries, tmp_path_factory.mktemp("knative-real")) as plane:
        trace = knative_real.request(plane)
        yield Run(trace, set(plane.fixture.asked))


@pytest.fixture(scope="module")
def trace(run: Run) -> list[Span]:
    return run.trace


def test_the_fixture_api_serves_every_resource_the_binaries_ask_for(run: Run) -> None:
    unserved = sorted(asked for asked in run.asked if asked.rsplit("/", 1)[1] not in KINDS)
    assert not unserved, f"the binaries asked for resources the fixture API does not serve: {unserved}"
    assert {"apis/eventing.knative.dev/v1/brokers", "apis/messaging.knative.dev/v1/inmemorychannels"} <= run.asked


@dataclass(frozen=True)
class Expected:
    label: str
    service: str
    name: str
    kind: str
    scope: str | None
    """None: a span of the workload's own (Python) instrumentation, whatever its scope."""
    parent: str | None


# The request's path as it ran, span by span, each under the one named as its parent. Every Knative span is
# in tests/fixtures/knative/otel-spans-1.22.json (test_the_knative_fixture_holds_what_ran checks both ways).
EXPECTED = (
    Expected("first's queue", "first", r"queue", "SERVER", OTELHTTP_SCOPE, None),
    Expected("first's proxy", "first", r"kn\.queueproxy\.proxy", "INTERNAL", QUEUE_SCOPE, "first's queue"),
    Expected("to first", "first", r"HTTP GET", "CLIENT", OTELHTTP_SCOPE, "first's proxy"),
    Expected("first", "first", r"GET /", "SERVER", None, "to first"),
    Expected("send", "first", r"send dev\.knative\.tracing\.hello", "PRODUCER", None, "first"),
    Expected("first's POST", "first", r"POST", "CLIENT", None, "send"),
    # The broker's two server spans side by side, both children of the caller's CLIENT span.
    Expected("ingress receive", "broker.ingress", r"kncloudevents\.receive", "SERVER", OTELHTTP_SCOPE, "first's POST"),
    Expected("ingress", "broker.ingress", r"POST /default/default", "SERVER", OTELHTTP_SCOPE, "first's POST"),
    Expected(
        "broker", "broker.ingress", r"broker:default\.default", "INTERNAL", "knative.dev/pkg/broker/ingress", "ingress"
    ),
    Expected(
        "ingress send",
        "broker.ingress",
        r"send http://default-kne-trigger-kn-channel\.default\.svc\.cluster\.local",
        "INTERNAL",
        KNCLOUDEVENTS_SCOPE,
        "broker",
    ),
    Expected("ingress POST", "broker.ingress", r"POST /", "CLIENT", OTELHTTP_SCOPE, "ingress send"),
    # The dispatcher has one handler: its kncloudevents.receive is its only server span.
    Expected(
        "dispatcher receive",
        "inmemorychannel-dispatcher",
        r"kncloudevents\.receive",
        "SERVER",
        OTELHTTP_SCOPE,
        "ingress POST",
    ),
    Expected(
        "dispatcher send",
        "inmemorychannel-dispatcher",
        rf"send http://broker-filter\.knative-eventing\.svc\.cluster\.local{FILTER_PATH}",
        "INTERNAL",
        KNCLOUDEVENTS_SCOPE,
        "dispatcher receive",
    ),
    Expected(
        "dispatcher POST",
        "inmemorychannel-dispatcher",
        rf"POST {FILTER_PATH}",
        "CLIENT",
        OTELHTTP_SCOPE,
        "dispatcher send",
    ),
    Expected("filter receive", "broker.filter", r"kncloudevents\.receive", "SERVER", OTELHTTP_SCOPE, "dispatcher POST"),
    Expected("filter", "broker.filter", rf"POST {FILTER_PATH}", "SERVER", OTELHTTP_SCOPE, "dispatcher POST"),
    Expected(
        "trigger",
        "broker.filter",
        r"trigger:first-to-second\.default",
        "INTERNAL",
        "knative.dev/pkg/broker/filter",
        "filter",
    ),
    Expected(
        "filter send",
        "broker.filter",
        r"send http://second\.default\.svc\.cluster\.local",
        "INTERNAL",
        KNCLOUDEVENTS_SCOPE,
        "trigger",
    ),
    Expected("filter POST", "broker.filter", r"POST /", "CLIENT", OTELHTTP_SCOPE, "filter send"),
    Expected("second's queue", "second", r"queue", "SERVER", OTELHTTP_SCOPE, "filter POST"),
    Expected("second's proxy", "second", r"kn\.queueproxy\.proxy", "INTERNAL", QUEUE_SCOPE, "second's queue"),
    Expected("to second", "second", r"HTTP POST", "CLIENT", OTELHTTP_SCOPE, "second's proxy"),
    Expected("second", "second", r"POST /", "SERVER", None, "to second"),
    Expected("process", "second", r"process dev\.knative\.tracing\.hello", "CONSUMER", None, "second"),
)
KNATIVE_SCOPES = {
    OTELHTTP_SCOPE,
    QUEUE_SCOPE,
    KNCLOUDEVENTS_SCOPE,
    "knative.dev/pkg/broker/ingress",
    "knative.dev/pkg/broker/filter",
}


def _scope(span: Span) -> str:
    return str(span.attributes.get("otel.scope.name", ""))


def _placed(trace: list[Span]) -> dict[str, Span]:
    """Each expected span's match: the one of its service, name, kind and scope under the expected parent."""
    placed: dict[str, Span] = {}
    for expected in EXPECTED:
        candidates = [
            span
            for span in trace
            if span.service == expected.service
            and re.fullmatch(expected.name, span.name)
            and span.kind == expected.kind
            and (_scope(span) == expected.scope if expected.scope else _scope(span) not in KNATIVE_SCOPES)
            and span.span_id not in {s.span_id for s in placed.values()}
            and (span.parent_id == placed[expected.parent].span_id if expected.parent else True)
        ]
        assert candidates, f"no span for {expected} in:\n" + "\n".join(
            f"  {s.service}: {s.name} {s.kind} {_scope(s)} parent={s.parent_id}" for s in trace
        )
        placed[expected.label] = candidates[0]
    return placed


def test_the_trace_is_one_and_holds_each_hop_in_order(trace: list[Span]) -> None:
    assert len({span.trace_id for span in trace}) == 1
    placed = _placed(trace)
    unexpected = [f"{s.service}: {s.name} ({s.kind})" for s in trace if s not in placed.values()]
    assert not unexpected, f"spans the path does not expect: {unexpected}"
    # The browser sent no traceparent: first's queue-proxy starts the trace, as the activator would in a cluster.
    assert placed["first's queue"].parent_id is None


def test_make_verifys_knative_check_passes_activator_excepted(trace: list[Span]) -> None:
    activator = [hop for hop in KNATIVE_HOPS if hop not in knative_real.REAL_HOPS]
    assert activator and all("activator" in hop.label for hop in activator)
    assert check(trace, knative_real.REAL_HOPS) == []
    # And the full check names only the activator as missing.
    problems = check(trace, KNATIVE_HOPS)
    assert problems and all("activator" in problem for problem in problems), problems


def test_each_queue_proxy_proxies_to_its_pods_own_app(trace: list[Span]) -> None:
    """As in a Knative pod: queue-proxy (service.name = the Knative Service) takes the request on its serving port
    and passes it to the app on the pod's own 127.0.0.1:USER_PORT, whose span is that CLIENT span's child."""
    placed = _placed(trace)
    for service, method in (("first", "GET"), ("second", "POST")):
        queue, to_app = placed[f"{service}'s queue"], placed[f"to {service}"]
        assert (queue.attributes["http.request.method"], queue.attributes["url.path"]) == (method, "/")
        assert to_app.attributes["url.full"] == f"http://127.0.0.1:{knative_real.USER_PORT}/"
        assert placed[service].parent_id == to_app.span_id


def test_the_knative_fixture_holds_what_ran(trace: list[Span]) -> None:
    """Each Knative span that ran is one tests/fixtures/knative/otel-spans-1.22.json lists for its component, and
    each span the fixture lists (but the activator's) ran."""
    components = [c for c in json.loads(FIXTURE.read_text())["components"] if c["component"] != "activator"]
    knative = [span for span in trace if _scope(span) in KNATIVE_SCOPES]

    def listed(span: Span, entry: dict[str, str]) -> bool:
        return (
            bool(re.search(entry["name"], span.name)) and span.kind == entry["kind"] and _scope(span) == entry["scope"]
        )

    for span in knative:
        owners = [c for c in components if re.search(c["service.name"], span.service)]
        assert any(listed(span, entry) for c in owners for entry in c["spans"]), (
            f"{span.service}: {span.name} ({span.kind}, {_scope(span)}) ran but is not in {FIXTURE.name}"
        )
    for component in components:
        for entry in component["spans"]:
            ran = [s for s in knative if re.search(component["service.name"], s.service) and listed(s, entry)]
            assert ran, (
                f"{FIXTURE.name} lists {component['component']}'s {entry['name']} ({entry['kind']}), which did not run"
            )


def test_make_run_knative_real_prints_each_tree_and_cleans_up_on_ctrl_c(binaries: Path) -> None:
    """What a user types: the first request's tree and the hop check's verdict, a tree for a later request, and
    on Ctrl-C (SIGINT to the foreground job, as a terminal sends it) no process, namespace or hosts file left."""
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", "KNATIVE=real"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = Output(process)
    try:
        text = output.until("Send more:", 120)
        for line in (
            "broker.ingress: broker:default.default",
            "inmemorychannel-dispatcher: kncloudevents.receive",
            "broker.filter: trigger:first-to-second.default",
            "second: process dev.knative.tracing.hello",
            "activator excepted): all there",
        ):
            assert line in text, text
        first = re.search(r"curl -i (http://\S+)", text)
        assert first, text
        assert httpx.get(first[1], timeout=30).status_code == 200
        output.until("second: process dev.knative.tracing.hello", 60)
        tag = re.search(r"network namespace (kt\d+)-", text)
        assert tag, text
        pids = {
            pid
            for pod in knative_real.PODS
            for pid in subprocess.run(
                ["ip", "netns", "pids", f"{tag[1]}-{pod}"], capture_output=True, text=True, check=True
            ).stdout.split()
        }
        assert len(pids) >= len(knative_real.PODS) + 2, pids  # five binaries, first and second
    finally:
        os.killpg(process.pid, signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    text = output.text + rest
    # make got the SIGINT too, as from a terminal, and dies of it once the demo has stopped.
    assert process.returncode in (0, -signal.SIGINT), text
    assert "stopping: processes, network namespaces and the bridge removed" in text
    assert text.count("(24 spans,") == 2, text
    assert "Traceback" not in text
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert f"{tag[1]}-" not in left, left
    assert not list(Path("/etc/netns").glob(f"{tag[1]}-*")), "its hosts files are left in /etc/netns"
    running = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert not running, f"processes of the run still running: {running}"


def test_without_the_binaries_make_run_names_the_fix(tmp_path: Path) -> None:
    """A machine that never ran make knative-binaries: an empty cache."""
    done = subprocess.run(
        ["make", "--no-print-directory", "run", "KNATIVE=real", "RUN_FLAGS=--once"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"in {tmp_path}/knative-tracing/" in done.stderr and "make knative-binaries" in done.stderr, done.stderr


def test_another_workshop_switch_is_refused_by_name() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "run", "KNATIVE=real", "BROKEN=1", "RUN_FLAGS=--once"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "drop the other switches (first: PROPAGATE_CONTEXT=false" in done.stderr, done.stderr


def test_what_a_killed_run_left_is_removed_by_the_next(binaries: Path) -> None:
    """SIGKILL leaves no chance to clean up: the next run removes the namespaces, bridge, hosts files and the
    processes still running in them (kt<pid>-* whose pid is gone), and only those."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.run_demo", "--knative-real"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "KNATIVE_BIN": str(binaries)},
    )
    output = Output(process)
    try:
        output.until("Send more:", 120)
    finally:
        process.kill()
        process.communicate(timeout=30)
    tag = f"kt{process.pid}"
    namespaces = [f"{tag}-{pod}" for pod in knative_real.PODS]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert all(namespace in listed for namespace in namespaces), listed
    pids = [
        pid
        for namespace in namespaces
        for pid in subprocess.run(
            ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
        ).stdout.split()
    ]
    assert pids, "the killed run's processes should still be running"

    assert tag in knative_real.Network.remove_stale()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert f"{tag}-" not in listed, listed
    assert not list(Path("/etc/netns").glob(f"{tag}-*"))
    assert subprocess.run(["ip", "link", "show", f"{tag}br"], capture_output=True, check=False).returncode != 0
    poll_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 10, "the killed run's processes to go")
