"""Start first, broker and second as real processes on loopback, wait until healthy, stop them cleanly.

One launcher for `make run`, the end-to-end tests and the bench, so they all run the services the way the
contract says: `.venv/bin/python -m <service>` from the repo root, configured by the environment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("second", "broker", "first")
"""Start order: each service's downstream first, so nothing is sent before its receiver listens."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> float:
    """Poll `url` until it answers 200; return the seconds it took. Fails naming the URL on timeout."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with status {process.returncode} before it was healthy")
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"Timed out after {timeout:.0f}s waiting for: {url} to answer 200")


@dataclass
class Service:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def start_service(
    name: str,
    port: int,
    env: Mapping[str, str],
    log_path: Path | None = None,
    *,
    command: list[str] | None = None,
) -> Service:
    """Start one service; its output goes to `log_path` (or this terminal when None)."""
    full_env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1", **env}
    out: IO[bytes] | None = log_path.open("wb") if log_path else None
    process = subprocess.Popen(
        command or [sys.executable, "-m", name],
        cwd=ROOT,
        env=full_env,
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
    )
    return Service(name, port, process, log_path)


@dataclass
class Stack:
    """The three services wired together; `ports` maps service name to port."""

    otlp_endpoint: str | None
    env: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    log_dir: Path | None = None
    services: dict[str, Service] = field(default_factory=dict)
    launcher: tuple[str, ...] = ()
    """A command that wraps `python -m <service>`, such as opentelemetry-instrument (zero-code)."""

    def environment(self, name: str) -> dict[str, str]:
        ports = {s: self.ports.setdefault(s, free_port()) for s in SERVICES}
        env = {
            "OTEL_SERVICE_NAME": name,
            "K_SINK": f"http://127.0.0.1:{ports['broker']}/default/default",
            "BROKER_SUBSCRIBERS": f"second=http://127.0.0.1:{ports['second']}",
            "BROKER_CONFIG": str(ROOT / "config"),
        }
        if self.otlp_endpoint:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.otlp_endpoint
        else:
            env["OTEL_TRACES_EXPORTER"] = "none"
        return {**env, **self.env, **self.service_env.get(name, {})}

    def start(self, timeout: float = 30.0) -> Stack:
        for name in SERVICES:
            env = self.environment(name)
            log_path = self.log_dir / f"{name}.log" if self.log_dir else None
            command = [*self.launcher, sys.executable, "-m", name] if self.launcher else None
            self.services[name] = start_service(name, self.ports[name], env, log_path, command=command)
        for service in self.services.values():
            try:
                wait_healthy(f"{service.url}/healthz", timeout, service.process)
            except (TimeoutError, RuntimeError) as exc:
                self.stop()
                raise RuntimeError(f"{service.name} did not start: {exc}\n{service.log()}") from None
        return self

    def url(self, name: str) -> str:
        return self.services[name].url

    def stop(self, timeout: float = 15.0) -> dict[str, int | None]:
        """SIGTERM every service (downstream last, so in-flight deliveries can land); return exit codes."""
        codes: dict[str, int | None] = {}
        for name in reversed(SERVICES):
            service = self.services.get(name)
            if service is None:
                continue
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
            try:
                codes[name] = service.process.wait(timeout)
            except subprocess.TimeoutExpired:
                service.process.kill()
                codes[name] = service.process.wait()
        return codes

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
