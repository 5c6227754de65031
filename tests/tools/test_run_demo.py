"""`make run` as a newcomer sees it: the trace tree, the logs, a curl line, a tree for every later request in
the order they were sent (failed ones marked), a line when a service dies, and a clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import Output
from tools.otlp_receiver import Receiver
from tools.stack import ROOT, free_port

W3C_IDS = [f"{n:032x}" for n in (0xA1, 0xA2, 0xA3)]


def _child(parent: int, module: str) -> int:
    """The pid of `parent`'s child process running `python -m <module>`."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and module.encode() in argv and b"-m" in argv:
            return int(proc.name)
    raise AssertionError(f"no child of {parent} runs {module}")


def test_make_run_reports_every_request_in_order_and_stops_cleanly_on_ctrl_c() -> None:
    port = free_port(3)
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.run_demo", "--port", str(port), "--otlp-port", str(free_port())],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process)
    try:
        text = output.until("Ctrl-C stops", 60)
        tree = [line for line in text.splitlines() if "|" in line and " ms " in line]
        assert any("first: send dev.knative.tracing.hello" in line and "PRODUCER" in line for line in tree), text
        assert any("broker: broker:default.default" in line for line in tree), text
        assert any("broker: trigger:first-to-second.default" in line for line in tree), text
        assert any("second: process dev.knative.tracing.hello" in line and "CONSUMER" in line for line in tree)
        assert "(9 spans," in text
        assert "Request headers:" in text
        assert "Event received: Context Attributes," in text
        assert f"curl -i http://127.0.0.1:{port}/" in text
        for noise in ("Started server process", "Waiting for application startup", "Uvicorn running on"):
            assert noise not in text, f"uvicorn start-up noise in make run's output: {noise}"

        first = f"http://127.0.0.1:{port}/"
        for trace_id in W3C_IDS:
            reply = httpx.get(first, headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}, timeout=10)
            assert reply.status_code == 200
        output.until(f"trace {W3C_IDS[-1]}", 30)

        # The broker dies: make run says so, and the next request's tree comes out marked.
        broker = _child(process.pid, "broker")
        subprocess.run(["kill", "-KILL", str(broker)], check=True)
        output.until("error: broker exited", 10)
        assert httpx.get(first, timeout=10).status_code == 503
        output.until("FAILED: first answered 503", 30)
        text = output.until("└─ first: POST", 10)  # the marked tree's last line
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    text += rest
    assert process.returncode == 0, text

    order = [text.index(f"trace {trace_id}") for trace_id in W3C_IDS]
    assert order == sorted(order), "trees must come in the order the requests were sent"
    assert "error: broker exited (stopped by SIGKILL)" in text
    failed = text[text.index("FAILED: first answered 503") :]
    assert "the event never reached broker or second" in failed.splitlines()[0]
    assert "first: GET /" in failed and "| !" in failed
    assert "stopped: " in text
    assert "Traceback" not in text


def _make_run(run_flags: str, env: dict[str, str], *, new_session: bool = False) -> subprocess.Popen[str]:
    """`make run RUN_FLAGS=...` as a user types it, with `env` added to this environment (PYTHON and make's own
    settings left out, so the repository's .venv is used as it is)."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "MAKEFLAGS", "MAKELEVEL")}
    base = {k: v for k, v in base.items() if not k.startswith("OTEL_")}
    return subprocess.Popen(
        ["make", "--no-print-directory", "run", f"RUN_FLAGS={run_flags}"],
        cwd=ROOT,
        env={**base, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=new_session,
    )


def _leftovers(tmp: Path) -> list[str]:
    return [p.name for p in tmp.iterdir() if p.name.startswith("knative-tracing-")]


def test_make_run_passes_the_spans_on_to_the_backend_the_environment_names(tmp_path: Path) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT set, as for a Jaeger next to make run: the tree prints and the backend (here a
    second OTLP receiver) gets every span of the trace."""
    backend = Receiver().start()
    try:
        port = free_port(3)
        process = _make_run(
            f"--once --port {port}", {"OTEL_EXPORTER_OTLP_ENDPOINT": backend.endpoint, "TMPDIR": str(tmp_path)}
        )
        text, _ = process.communicate(timeout=120)
        assert process.returncode == 0, text
        assert f"spans also go to {backend.endpoint}/v1/traces (OTEL_EXPORTER_OTLP_ENDPOINT)" in text
        match = re.search(r"^trace ([0-9a-f]{32})  \(9 spans", text, re.MULTILINE)
        assert match, text
        trace_id = match.group(1)
        spans = backend.wait_for(lambda spans: sum(s.trace_id == trace_id for s in spans) >= 9, timeout=10)
        mine = [s for s in spans if s.trace_id == trace_id]
        assert len(mine) == 9, [s.name for s in mine]
        assert {s.service for s in mine} == {"first", "broker", "second"}
        assert re.search(rf"passed \d+ export requests on to {re.escape(backend.endpoint)}/v1/traces\n", text), text
    finally:
        backend.stop()
    assert _leftovers(tmp_path) == [], "make run left its log folder behind"


def test_a_backend_that_does_not_answer_costs_only_its_own_copy(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    process = _make_run(f"--once --port {free_port(3)}", {"OTEL_EXPORTER_OTLP_ENDPOINT": nobody})
    text, _ = process.communicate(timeout=120)
    assert process.returncode == 0, text
    assert "second: process dev.knative.tracing.hello" in text
    assert f"warning: spans not passed on to {nobody}/v1/traces: ConnectError" in text
    assert text.count("warning: spans not passed on") == 1, "one warning, not one per batch"


def test_a_backend_setting_make_run_cannot_follow_is_named_before_anything_starts(tmp_path: Path) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    process = _make_run(f"--once --port {free_port(3)}", {**env, "TMPDIR": str(tmp_path)})
    text, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "error: OTEL_EXPORTER_OTLP_PROTOCOL=grpc: make run passes spans on over OTLP/HTTP only" in text, text
    assert "starting second" not in text
    assert _leftovers(tmp_path) == []


def test_ctrl_c_from_the_terminal_stops_every_service_the_same_way_and_leaves_nothing(tmp_path: Path) -> None:
    """The terminal sends SIGINT to the whole foreground process group (make, make run and, before, the services
    too, which raced make run's own SIGTERM): every service must be reported stopped the same way."""
    port = free_port(3)
    process = _make_run(f"--port {port} --otlp-port {free_port()}", {"TMPDIR": str(tmp_path)}, new_session=True)
    output = Output(process)
    try:
        output.until("Ctrl-C stops", 60)
        assert len(_leftovers(tmp_path)) == 1, "make run's log folder, while it runs"
    finally:
        os.killpg(process.pid, signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    text = output.text + rest
    # make got the SIGINT too: after make run's clean exit it ends itself by that signal, as make does.
    assert process.returncode == -signal.SIGINT, text
    stopped = next(line for line in text.splitlines() if line.startswith("stopped: "))
    assert stopped == "stopped: first (stopped by SIGTERM), broker (stopped by SIGTERM), second (stopped by SIGTERM)"
    assert _leftovers(tmp_path) == [], "make run left its log folder behind"
    assert "Traceback" not in text


def test_a_failed_start_leaves_nothing_behind(tmp_path: Path) -> None:
    """A setting every service refuses at start-up (a propagator nobody installed): make run names the service
    that did not start, with its log, and its log folder goes with it."""
    process = _make_run(
        f"--once --port {free_port(3)}", {"OTEL_PROPAGATORS": "carrier-pigeon", "TMPDIR": str(tmp_path)}
    )
    text, _ = process.communicate(timeout=90)
    assert process.returncode != 0
    assert "error: second did not start" in text and "carrier-pigeon" in text, text
    assert _leftovers(tmp_path) == []


# What differs from one run to the next in a log line: ids, times, ports.
_VARYING = re.compile(
    r"(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})|(?P<stamp>\d{4}-\d\d-\d\dT[\d:.]+Z)"
    r"|(?P<hex>\b[0-9a-f]{32}\b|\b[0-9a-f]{16}\b)|(?P<clock>\b\d\d:\d\d:\d\d\b)|(?P<port>(?<=127\.0\.0\.1:)\d+)"
)
_GENERAL = {
    "uuid": "[0-9a-f-]{36}",
    "stamp": "[0-9T:.Z-]+",
    "hex": "[0-9a-f]+",
    "clock": r"\d\d:\d\d:\d\d",
    "port": r"\d+",
}


def _shape(line: str) -> re.Pattern[str]:
    """`line` as a pattern in which what varies between runs may be anything of its kind."""
    parts, last = [], 0
    for varying in _VARYING.finditer(line):
        parts += [re.escape(line[last : varying.start()]), _GENERAL[str(varying.lastgroup)]]
        last = varying.end()
    return re.compile("".join([*parts, re.escape(line[last:])]))


def test_the_annotated_log_lines_in_docs_are_what_make_run_prints() -> None:
    """docs/logs.md explains real lines: each of its lines (ids, times and ports aside) is one make run prints."""
    doc = (ROOT / "docs" / "logs.md").read_text()
    block = doc.split("```text\n", 1)[1].split("```", 1)[0]
    documented = [line for line in block.splitlines() if line.strip() not in ("...", "")]
    process = _make_run(f"--once --port {free_port(3)} --otlp-port {free_port()}", {})
    text, _ = process.communicate(timeout=120)
    assert process.returncode == 0, text
    printed = text.splitlines()
    missing = [line for line in documented if not any(_shape(line).fullmatch(p) for p in printed)]
    assert not missing, "docs/logs.md shows lines make run does not print:\n" + "\n".join(missing) + f"\n---\n{text}"
