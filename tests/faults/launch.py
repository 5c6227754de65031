"""Start several services at once: each costs a couple of seconds of imports, so the fault tests start the
processes a module needs side by side instead of one after the other."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tools.stack import Service, free_port, start_service, wait_healthy


@contextmanager
def running_together(specs: Mapping[str, tuple[str, dict[str, str]]], log_dir: Path) -> Iterator[dict[str, Service]]:
    """`specs` maps a label to (service name, environment); yields label -> healthy Service; SIGTERMs all on exit."""
    services: dict[str, Service] = {}
    try:
        for label, (name, env) in specs.items():
            services[label] = start_service(name, free_port(), env, log_dir / f"{label}.log")
        for service in services.values():
            wait_healthy(f"{service.url}/healthz", 30, service.process)
        yield services
    finally:
        for service in services.values():
            if service.process.poll() is None:
                service.process.terminate()
        for service in services.values():
            service.process.wait(15)
