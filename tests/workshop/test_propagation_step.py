"""The propagation step is live: the one `propagate.inject(headers)` line in first/app.py is what carries the
trace across the broker. first is run twice from copies of its package, one as it is and one with that line
removed (the test edits the copy, never the product), both posting to the session stack's broker: the first
copy makes one trace from first to second, the second breaks it in two at the broker."""

from __future__ import annotations

import ast
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tools.event_traces import wait_for_event
from tools.otlp_receiver import Receiver
from tools.spans import Span
from tools.stack import ROOT, SERVICE_ENV, Service, Stack, free_port, running_all, start_service

STEP = "propagate.inject(headers)"


def _step_lines(source: str) -> list[int]:
    return [number for number, line in enumerate(source.splitlines()) if STEP in line]


def _copy_of_first(into: Path, *, without_step: bool) -> Path:
    shutil.copytree(ROOT / "first", into / "first", ignore=shutil.ignore_patterns("__pycache__"))
    app = into / "first" / "app.py"
    lines = app.read_text().splitlines()
    if without_step:
        (number,) = _step_lines(app.read_text())
        indent = lines[number][: len(lines[number]) - len(lines[number].lstrip())]
        lines[number] = f"{indent}pass  # the propagation step, removed by tests/workshop/test_propagation_step.py"
    app.write_text("\n".join(lines) + "\n")
    return into


@pytest.fixture(scope="module")
def firsts(stack: Stack, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Service]]:
    """`as-is` and `without-step`: `python -m first` from a copy of its package and the lesson module, posting to
    the session stack's broker."""
    services = {}
    for name in ("as-is", "without-step"):
        copy = _copy_of_first(tmp_path_factory.mktemp(name), without_step=name == "without-step")
        shutil.copytree(ROOT / "event_tracing", copy / "event_tracing", ignore=shutil.ignore_patterns("__pycache__"))
        # The copy comes first on sys.path; plugins/ (named by the settings) still comes from the repository.
        boot = (
            f"import runpy, sys; sys.path[:0] = [{str(copy)!r}, {str(ROOT)!r}]; "
            "runpy.run_module('first', run_name='__main__')"
        )
        env = {
            "OTEL_SERVICE_NAME": "first",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "K_SINK": stack.url("broker") + "/default/default",
        }
        log = copy / "first.log"
        services[name] = start_service("first", free_port(), env, log, command=[sys.executable, "-c", boot])
    with running_all(services) as healthy:
        yield healthy


def _journey(service: Service, receiver: Receiver) -> tuple[str, list[list[Span]]]:
    reply = httpx.get(service.url + "/", timeout=10)
    assert reply.status_code == 200, reply.text
    traces = wait_for_event(receiver, reply.json()["event_id"], 15)
    assert traces is not None, f"the event never reached second:\n{service.log()}"
    return reply.json()["trace_id"], traces


def test_the_step_is_one_line_of_first_and_nowhere_else_for_its_request() -> None:
    assert len(_step_lines((ROOT / "first" / "app.py").read_text())) == 1
    # Nothing else first runs writes trace headers: the lesson module injects only into the event's extension (its
    # own W3C propagator, not the HTTP headers), and the httpx instrumentor, which would, stays off.
    tree = ast.parse((ROOT / "event_tracing" / "__init__.py").read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    injects = [c for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr == "inject"]
    assert [ast.unparse(c) for c in injects] == ["_W3C.inject(carrier)"]
    assert "httpx" in SERVICE_ENV["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"].split(",")


def test_as_is_one_trace_from_first_to_second(firsts: dict[str, Service], receiver: Receiver) -> None:
    trace_id, traces = _journey(firsts["as-is"], receiver)
    assert len(traces) == 1, f"expected one trace, got {len(traces)}"
    assert {s.trace_id for s in traces[0]} == {trace_id}
    assert {s.service for s in traces[0]} == {"first", "broker", "second"}


def test_without_the_step_the_trace_breaks_at_the_broker(firsts: dict[str, Service], receiver: Receiver) -> None:
    trace_id, traces = _journey(firsts["without-step"], receiver)
    assert len(traces) == 2, f"expected first's trace and the broker's + second's, got {traces}"
    mine, rest = traces
    assert {s.trace_id for s in mine} == {trace_id}
    # Everything else about first is unchanged: its CLIENT span still wraps the post, it just carries nothing.
    assert sorted(s.kind for s in mine) == ["CLIENT", "PRODUCER", "SERVER"]
    assert {s.service for s in rest} == {"broker", "second"}
    roots = [s for s in rest if s.parent_id is None]
    assert [(r.service, r.kind) for r in roots] == [("broker", "SERVER")], "the broker starts a new trace"
