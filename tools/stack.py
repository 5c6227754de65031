"""Start first, broker and second as real processes on loopback, wait until healthy, stop them cleanly.

One launcher for `make run`, the end-to-end tests and the bench, so they all run the services the way the
contract says: `.venv/bin/python -m <service>` from the repo root, configured by the environment.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("second", "broker", "first")
"""Start order: each service's downstream first, so nothing is sent before its receiver listens."""


# Below Linux's ephemeral range (32768-60999): the kernel gives those to outgoing connections, and one of them
# could take a port between this check and the service binding it ("address already in use"). Each block is
# handed out once per process, so tests running side by side never get the same ports.
PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_port(count: int = 1) -> int:
    """A loopback port nothing listens on now (and the `count` - 1 after it), outside the range outgoing
    connections are given: make run puts second, broker and the untraced hop right after first."""
    with _ports_lock:
        for _ in range(500):
            port = random.randrange(PORT_RANGE[0], PORT_RANGE[1] - count)  # noqa: S311 (a port to try, not a secret)
            block = set(range(port, port + count))
            if block & _handed_out or any(in_use(p) for p in block):
                continue
            _handed_out.update(block)
            return port
    raise RuntimeError(f"no {count} free ports in a row on 127.0.0.1 in {PORT_RANGE}")


def in_use(port: int) -> bool:
    """Something listens on 127.0.0.1:`port` (or on every address). SO_REUSEADDR as uvicorn binds, so a closed
    connection still in TIME_WAIT does not count."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def address_in_use(service: Service) -> bool:
    """The service exited because its port was taken (uvicorn's bind error)."""
    return service.process.poll() is not None and "address already in use" in service.log().lower()


def _listening_inodes(port: int) -> set[str] | None:
    """The socket inodes listening on TCP `port` (any local address); None where /proc cannot tell (not Linux)."""
    inodes: set[str] = set()
    found = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found = True
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the inode.
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes if found else None


def _family(pid: int) -> set[int]:
    """`pid` and every process descended from it (a launcher such as `unshare` runs the service as its child)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces and parentheses: the parent pid follows the last ')'.
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    family, added = {pid}, True
    while added:
        new = {child for child, parent in parents.items() if parent in family} - family
        family |= new
        added = bool(new)
    return family


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` (or a process it started) holds the socket listening on `port`: a 200 from another
    process that took the port (a demo left running, another engineer's service) must not pass for the service
    we started."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return True  # no /proc: the answer is trusted, as before
    for member in _family(pid):
        try:
            fds = os.listdir(f"/proc/{member}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{member}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return True
    return False


def wait_healthy(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> float:
    """Poll `url` until it answers 200 (from `process` itself, when given: its own PID holds the port); return
    the seconds it took. Fails naming the URL on timeout."""
    started = time.monotonic()
    deadline = started + timeout
    port = urlsplit(url).port or 80
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with status {process.returncode} before it was healthy")
        try:
            answered = httpx.get(url, timeout=0.5).status_code == 200
            if answered and (process is None or listens(process.pid, port)):
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


SERVICE_ENV: Mapping[str, str] = {
    # OpenTelemetry, through the standard variables: the distro that checks these settings first, W3C Trace
    # Context (read strictly) and baggage, the lean OTLP exporter, the B3-aware parent-based sampler (plugins/).
    # FastAPI's own telemetry makes the SERVER spans, so the stock instrumentors (for the zero-code step) stay off.
    "OTEL_PYTHON_DISTRO": "knative_tracing",
    "OTEL_PROPAGATORS": "tracecontext_strict,baggage",
    "OTEL_TRACES_EXPORTER": "otlp_lean",
    "OTEL_TRACES_SAMPLER": "parentbased_b3",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "128",
    # Span attributes hold client-chosen values (an event id can be 1 MiB): cut each at 4096 characters, so the
    # span queue is bounded in bytes, not only in spans.
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "4096",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "fastapi,httpx",
    # uvicorn, through its own variables: the bounded server and the logging configuration of plugins/.
    "UVICORN_HTTP": "plugins.server:BoundedHttpToolsProtocol",
    "UVICORN_LOG_CONFIG": "plugins/logging.yaml",
    "UVICORN_LOOP": "uvloop",
    "UVICORN_ACCESS_LOG": "false",
    "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN": "20",
}
"""What every service runs with, here and in the images (their Dockerfiles set the same: tests/containers checks
it): the plug-ins are chosen by these settings, never imported by the apps."""
SERVICE_OWN_ENV: Mapping[str, Mapping[str, str]] = {
    "second": {"STRICT_CLOUDEVENTS": "true"},
    "first": {"MAX_HEADER_BYTES": "61440"},
}
"""second receives CloudEvents: the receiving layer reads each strictly before the app (plugins/receive.py).
first takes request heads 4 KiB smaller than the others: the caller's Content-Type goes on to the broker and
second inside a head that also carries the event's attributes and the trace context, so a caller's head at first's
limit still fits theirs (at 64 KiB a 64 KiB Content-Type got 431 from the broker, and first answered 502)."""


def service_environment(name: str) -> dict[str, str]:
    return {**SERVICE_ENV, **SERVICE_OWN_ENV.get(name, {})}


def start_service(
    name: str,
    port: int,
    env: Mapping[str, str],
    log_path: Path | None = None,
    *,
    command: list[str] | None = None,
    own_process_group: bool = False,
) -> Service:
    """Start one service; its output goes to `log_path` (or this terminal when None). `own_process_group`: the
    terminal's Ctrl-C does not reach it, so whoever started it stops it (make run: every service the same way)."""
    full_env = {
        **service_environment(name),
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    out: IO[bytes] | None = log_path.open("wb") if log_path else None
    process = subprocess.Popen(
        command or [sys.executable, "-m", name],
        cwd=ROOT,
        env=full_env,
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        process_group=0 if own_process_group else None,
    )
    return Service(name, port, process, log_path)


def wait_all_healthy(services: Iterable[Service], timeout: float = 30.0) -> None:
    """Wait for each service's `/healthz`; fail naming the one that did not come up, with its log."""
    for service in services:
        try:
            wait_healthy(f"{service.url}/healthz", timeout, service.process)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{service.name} did not start: {exc}\n{service.log()}") from None


def stop(service: Service, timeout: float = 15.0) -> int | None:
    """SIGTERM `service` and wait for it (SIGKILL if it outlives `timeout`); its exit code."""
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGTERM)
    try:
        return service.process.wait(timeout)
    except subprocess.TimeoutExpired:
        service.process.kill()
        return service.process.wait()


@contextmanager
def running_all(services: dict[str, Service], timeout: float = 30.0) -> Iterator[dict[str, Service]]:
    """Services already started side by side (each costs seconds of imports): healthy on entry, stopped on exit."""
    try:
        wait_all_healthy(services.values(), timeout)
        yield services
    finally:
        for service in services.values():
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        for service in services.values():
            stop(service)


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
    own_process_group: bool = False
    """Each service in a process group of its own (start_service): only `stop()` ends them."""

    def environment(self, name: str) -> dict[str, str]:
        ports = {s: self.ports.setdefault(s, free_port()) for s in SERVICES}
        env = {
            "OTEL_SERVICE_NAME": name,
            "K_SINK": f"http://127.0.0.1:{ports['broker']}/default/default",
            "BROKER_SUBSCRIBERS": f"second=http://127.0.0.1:{ports['second']}",
            "BROKER_CONFIG": str(ROOT / "config"),
        }
        if name == "broker":
            # Each stack's broker its own store (broker/store.py): two brokers on one would deliver twice.
            folder = self.log_dir or Path(tempfile.mkdtemp(prefix="broker-store-"))
            env["BROKER_STORE"] = str(folder / "broker-store.sqlite3")
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
            self.services[name] = start_service(
                name, self.ports[name], env, log_path, command=command, own_process_group=self.own_process_group
            )
        try:
            wait_all_healthy(self.services.values(), timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def url(self, name: str) -> str:
        return self.services[name].url

    def stop(self, timeout: float = 15.0) -> dict[str, int | None]:
        """SIGTERM every service (downstream last, so in-flight deliveries can land); return exit codes."""
        return {name: stop(self.services[name], timeout) for name in reversed(SERVICES) if name in self.services}

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_untraced_hop(
    port: int, target: str, log_path: Path | None = None, *, own_process_group: bool = False
) -> Service:
    """Run the untraced hop (tools/untraced_hop.py) as its own process on `port`, forwarding to `target`; return
    once it answers."""
    command = [sys.executable, "-m", "tools.untraced_hop"]
    hop = start_service(
        "untraced-hop", port, {"HOP_TARGET": target}, log_path, command=command, own_process_group=own_process_group
    )
    try:
        wait_healthy(f"{hop.url}/healthz", 10, hop.process)
    except (TimeoutError, RuntimeError) as exc:
        hop.process.terminate()
        raise RuntimeError(f"the untraced hop did not start: {exc}\n{hop.log()}") from None
    return hop
