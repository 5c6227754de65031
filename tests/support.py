"""Helpers the tests share: waiting with a message that says what was awaited."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import TypeVar

from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter, TextMapPropagator

from tools.hops import is_complete
from tools.otlp_receiver import Receiver
from tools.spans import Span
from tools.stack import Service, free_port, running_all, start_service
from tools.trace_tree import render

T = TypeVar("T")


def poll_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Call `check` until it returns something truthy; fail with "Timed out after Ns waiting for: <what>"."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout:.0f}s waiting for: {what}")
        time.sleep(interval)


def complete_trace(receiver: Receiver, trace_id: str, timeout: float = 10.0) -> list[Span]:
    """The spans of `trace_id` once first's, the broker's and second's have all arrived."""
    spans = receiver.wait_for(lambda spans: is_complete([s for s in spans if s.trace_id == trace_id]), timeout)
    mine = [s for s in spans if s.trace_id == trace_id]
    if not is_complete(mine):
        raise AssertionError(
            f"Timed out after {timeout:.0f}s waiting for: complete trace {trace_id}; got:\n{render(mine)}"
        )
    return mine


@contextmanager
def running(name: str, env: dict[str, str], log_dir: Path, *, command: list[str] | None = None) -> Iterator[Service]:
    """One service as a real process on a free port, healthy on entry, SIGTERMed on exit."""
    port = free_port()
    service = start_service(name, port, env, log_dir / f"{name}-{port}.log", command=command)
    with running_all({name: service}):
        yield service


def cloudevent_headers(**overrides: str) -> dict[str, str]:
    """A valid binary-mode CloudEvent's headers, with a fresh id."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": secrets.token_hex(8),
        "ce-source": "tests",
        "ce-type": "dev.knative.tracing.hello",
        "content-type": "text/plain",
    }
    headers.update(overrides)
    return headers


class HeaderListGetter(Getter[Mapping[str, list[str]]]):
    """Every value of a repeated header, as FastAPI's telemetry hands the propagators a request's headers."""

    def get(self, carrier: Mapping[str, list[str]], key: str) -> list[str] | None:
        return carrier.get(key)

    def keys(self, carrier: Mapping[str, list[str]]) -> list[str]:
        return list(carrier)


GETTER = HeaderListGetter()


def header_lists(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    """ASGI header pairs as {lower-case name: [values]}: a header sent twice stays two values."""
    headers: dict[str, list[str]] = {}
    for name, value in raw:
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return headers


def propagators(names: str | None = None) -> TextMapPropagator:
    """The composite propagator OpenTelemetry builds from OTEL_PROPAGATORS (or `names`), through the same
    `opentelemetry_propagator` entry points, failing as it fails on a name it does not know."""
    names = os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage") if names is None else names
    found = []
    for name in (part.strip() for part in names.split(",")):
        if not name or name == "none":
            continue
        points = entry_points(group="opentelemetry_propagator", name=name)
        if not points:
            raise ValueError(f"Propagator {name} not found. It is either misspelled or not installed.")
        found.append(next(iter(points)).load()())
    return CompositePropagator(found)


class Output:
    """A demo's output (`make run`, `python -m tools.run_demo`), read line by line as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._stdout = process.stdout
        self.lines: list[str] = []

    def until(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if text in line:
                return self.text
        raise AssertionError(f"Timed out after {timeout:.0f}s waiting for: {text!r} in:\n{self.text}")

    @property
    def text(self) -> str:
        return "".join(self.lines)
