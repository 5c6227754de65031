"""Start several services at once: each costs a couple of seconds of imports, so the fault tests start the
processes a module needs side by side instead of one after the other."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tools.stack import Service, free_port, running_all, start_service


@contextmanager
def running_together(specs: Mapping[str, tuple[str, dict[str, str]]], log_dir: Path) -> Iterator[dict[str, Service]]:
    """`specs` maps a label to (service name, environment); yields label -> healthy Service; SIGTERMs all on exit."""
    services = {
        label: start_service(name, free_port(), env, log_dir / f"{label}.log") for label, (name, env) in specs.items()
    }
    with running_all(services) as healthy:
        yield healthy
