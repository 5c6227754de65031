"""Fixtures shared by the whole suite: an OTLP receiver and the three services as real processes."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tools.otlp_receiver import Receiver
from tools.stack import Stack

# The Ctrl-C tests send SIGINT to the processes they start, as a terminal does to its foreground job. A shell
# starts background jobs (`make test &`, a CI runner's) with SIGINT ignored, and an ignored signal stays ignored
# through exec: the services' uvicorn would then re-raise the signal into nothing and exit 0, not 130. A handled
# signal is reset to its default on exec, so the processes the tests start see SIGINT as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    """A real OTLP/HTTP endpoint on a free loopback port; spans arrive over the wire, not through a mock."""
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def stack(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """first -> broker -> second on free loopback ports, exporting to `receiver`; started once per session."""
    # A short batch delay so tests see spans quickly; everything else is the services' defaults.
    stack = Stack(
        otlp_endpoint=receiver.endpoint,
        env={"OTEL_BSP_SCHEDULE_DELAY": "50"},
        log_dir=tmp_path_factory.mktemp("stack"),
    )
    with stack:
        yield stack


B3_ERA = {"OTEL_PROPAGATORS": "b3multi_strict,tracecontext_strict,baggage"}
"""The article's era (Knative <= 1.18, `make run B3=1`): B3 headers as well as W3C, W3C winning when both come."""


@pytest.fixture(scope="session")
def b3_stack(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The session stack's twin with B3 on, for the callers that bring B3."""
    stack = Stack(
        otlp_endpoint=receiver.endpoint,
        env={"OTEL_BSP_SCHEDULE_DELAY": "50", **B3_ERA},
        log_dir=tmp_path_factory.mktemp("b3-stack"),
    )
    with stack:
        yield stack
