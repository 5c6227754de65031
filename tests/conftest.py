"""Fixtures shared by the whole suite: an OTLP receiver and the three services as real processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.otlp_receiver import Receiver
from tools.stack import Stack


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
