"""Helpers the tests share: waiting with a message that says what was awaited."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

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
