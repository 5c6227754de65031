"""Each image, reproduced without an engine: its files laid out as its Dockerfile lays them, started as its CMD.

A dependency missing from the lock, a package the Dockerfile forgets to COPY, or a CMD that does not start the
service fails here. The services run with the image's ENV and nothing else from this machine, but HOST and PORT
(a free loopback port) and the OTLP endpoint (the suite's receiver). Each runs as PID 1 of its own PID namespace,
as in a container, and SIGTERM sent from outside (as `docker stop` and the kubelet send it) must stop it cleanly,
its spans flushed, as Knative scaling to zero needs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.containers import dockerfiles
from tests.support import poll_until
from tools.otlp_receiver import Receiver
from tools.stack import ROOT, Service, free_port, wait_healthy

PID_NAMESPACE = ["unshare", "--pid", "--fork", "--kill-child"]
"""util-linux's unshare (root): the command runs as PID 1 of a new PID namespace, and dies with unshare."""
BASE_PATH = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The python base image's PATH, which the Dockerfiles' `ENV PATH=/venv/bin:$PATH` extends."""


@dataclass
class Layout:
    """Where the image's paths live on this machine: the venv built once, the rest under the service's root."""

    root: Path
    venv_path: str
    venv: Path

    def in_venv(self, image_path: str) -> bool:
        return image_path == self.venv_path or image_path.startswith(self.venv_path + "/")

    def host(self, image_path: str) -> Path:
        if self.in_venv(image_path):
            return self.venv / image_path[len(self.venv_path) :].lstrip("/")
        return self.root / image_path.lstrip("/")


def lay_out(service: str, venv: Path, root: Path) -> tuple[Layout, dockerfiles.Stage]:
    """Copy what the final stage COPYs from the context (as .dockerignore filters it) to where it puts it."""
    final = dockerfiles.stages(ROOT / service / "Dockerfile")[-1]
    (from_deps,) = [c for c in dockerfiles.copies(final) if c.from_stage is not None]
    layout = Layout(root, from_deps.destination, venv)
    workdir = final.workdir()
    for copy in dockerfiles.copies(final):
        if copy.from_stage is not None:
            continue
        for source in copy.sources:
            destination = copy.destination if copy.destination.startswith("/") else f"{workdir}/{copy.destination}"
            for file in dockerfiles.context_files(source):
                relative = file.relative_to(ROOT / source.rstrip("/")) if (ROOT / source).is_dir() else Path(file.name)
                target = layout.host(destination) / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)
    return layout, final


def image_process(service: str, venv: Path, root: Path, overrides: dict[str, str], log: Path) -> Service:
    """Start `service` as the image's CMD, in its WORKDIR, with its ENV (paths mapped) plus `overrides`."""
    layout, final = lay_out(service, venv, root)
    env = final.env({"PATH": BASE_PATH})
    env["PATH"] = ":".join(str(layout.host(p)) if layout.in_venv(p) else p for p in env["PATH"].split(":"))
    env.update(overrides)
    command = final.cmd()
    executable = shutil.which(command[0], path=env["PATH"])
    assert executable is not None, f"{service}: CMD {command[0]!r} is not on the image's PATH {env['PATH']}"
    assert Path(executable).is_relative_to(venv), f"{service}: CMD runs {executable}, not the venv's Python"
    # As in a container, the service is PID 1 of its own PID namespace: the kernel drops every signal a PID 1 has
    # no handler for, so SIGTERM stops it only if the service handles SIGTERM itself.
    process = subprocess.Popen(
        [*PID_NAMESPACE, executable, *command[1:]],
        cwd=layout.host(final.workdir()),
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Service(service, int(overrides["PORT"]), process, log)


def pid_one(service: Service) -> int:
    """This machine's PID for the service, which is PID 1 inside its namespace (unshare's forked child)."""
    pid = service.process.pid

    def child() -> int | None:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(children[0]) if children else None

    return poll_until(child, 5, f"{service.name}: unshare's child process")


def _event(event_type: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": secrets.token_hex(8),
        "ce-source": "tests/containers",
        "ce-type": event_type,
        "content-type": "application/json",
    }


def _traced_request(service: Service, trace_id: str) -> int:
    """One request that makes `service` start a span of its own under `trace_id`; returns the HTTP status."""
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    url = service.url
    if service.name == "first":
        # K_SINK points at a closed port: first answers 5xx and its PRODUCER span records the failure.
        return httpx.get(f"{url}/", headers=headers, timeout=10).status_code
    if service.name == "second":
        return httpx.post(
            f"{url}/", headers={**headers, **_event("dev.knative.tracing.hello")}, content=b"{}", timeout=10
        ).status_code
    # A type no Trigger wants: the ingress span is made and nothing is delivered anywhere.
    event = _event("dev.knative.tracing.unrouted")
    return httpx.post(f"{url}/default/default", headers={**headers, **event}, content=b"{}", timeout=10).status_code


STATUS = {"first": range(500, 600), "second": range(200, 300), "broker": range(200, 300)}
SPAN = {"first": "send dev.knative.tracing.hello", "second": "process dev.knative.tracing.hello"}
SPAN["broker"] = "broker:default.default"


@pytest.fixture(scope="module")
def started(
    image_venv: Path, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Service]]:
    root = tmp_path_factory.mktemp("images")
    closed = f"http://127.0.0.1:{free_port()}"
    per_service = {
        "first": {"K_SINK": f"{closed}/default/default"},
        "broker": {"BROKER_SUBSCRIBERS": f"second={closed}"},
    }
    services: dict[str, Service] = {}
    for name in dockerfiles.SERVICES:
        overrides = {
            "HOST": "127.0.0.1",
            "PORT": str(free_port()),
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            # Nothing leaves before shutdown, so the spans the test finds were flushed by SIGTERM's shutdown.
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
            **per_service.get(name, {}),
        }
        services[name] = image_process(name, image_venv, root / name, overrides, root / f"{name}.log")
    try:
        for service in services.values():
            try:
                wait_healthy(f"{service.url}/healthz", 30, service.process)
            except (RuntimeError, TimeoutError) as exc:
                pytest.fail(f"{service.name}, started as its image starts it, is not healthy: {exc}\n{service.log()}")
        yield services
    finally:
        for service in services.values():
            if service.process.poll() is None:
                service.process.kill()
                service.process.wait()


@pytest.mark.parametrize("name", dockerfiles.SERVICES)
def test_image_layout_starts_healthy(started: dict[str, Service], name: str) -> None:
    reply = httpx.get(f"{started[name].url}/healthz", timeout=5)
    assert reply.status_code == 200, started[name].log()


def test_sigterm_stops_each_service_cleanly_and_flushes_its_spans(
    started: dict[str, Service], receiver: Receiver
) -> None:
    trace_ids = {name: secrets.token_hex(16) for name in started}
    for name, service in started.items():
        status = _traced_request(service, trace_ids[name])
        assert status in STATUS[name], f"{name} answered {status}\n{service.log()}"
    assert not any(receiver.spans(t) for t in trace_ids.values()), "spans left before shutdown: flush not tested"

    for service in started.values():
        os.kill(pid_one(service), signal.SIGTERM)
    for name, service in started.items():
        try:
            code = service.process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} still running 25s after SIGTERM\n{service.log()}")
        # 0: uvicorn returned (as PID 1, its re-raise of SIGTERM after the graceful shutdown is dropped);
        # -15: unshare passing on a death by SIGTERM.
        assert code in (0, -signal.SIGTERM), f"{name} exited {code} on SIGTERM\n{service.log()}"

    # The export happens inside the shutdown, before the process exits: no waiting needed here.
    for name, service in started.items():
        flushed = [s for s in receiver.spans(trace_ids[name]) if s.service == name and s.name == SPAN[name]]
        assert flushed, f"{name}'s {SPAN[name]!r} span was not flushed on SIGTERM\n{service.log()}"
