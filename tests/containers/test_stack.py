"""The container path for real: the three images built from their Dockerfiles on a locally made base, the compose
stack brought up by `make up` itself (real Compose v2, Podman's Docker API as the engine), one request traced
first -> broker -> second into the stack's trace backend, then stopped: clean exits, spans flushed.

The one part that is not the real thing is Jaeger, whose image cannot be pulled here: a STAND-IN
(tests/containers/jaeger_standin.py) takes its place under the name compose asks for. Everything else is the
project's own images and docker-compose.yml as a user runs them. On a machine that cannot run an engine (not root,
no apt) this module skips, saying why; under CI=true it fails instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.containers import dockerfiles
from tests.containers.conftest import COMPOSE, compose_env, resolved_compose
from tests.containers.engine import (
    STANDIN_TAG,
    Engine,
    build_jaeger_standin,
    podman_engine,
)
from tests.support import poll_until
from tools.hops import LOCAL_HOPS, check
from tools.jaeger import fetch_trace
from tools.stack import ROOT, free_port

# Building from a fresh base takes minutes on a busy 2-core machine (measured: docs/compose.md).
pytestmark = pytest.mark.timeout(1500)

IMAGE_USER = "65532:65532"
CLEAN_EXITS = (0, 143)
"""A service's exit status after SIGTERM: 0 when it returned, 143 (128 + SIGTERM) when it re-raised the signal."""


@dataclass
class Stack:
    engine: Engine
    project: str
    make_args: list[str]
    env: dict[str, str]
    """make's environment: the engine's, and the compose project's name."""
    compose_env: dict[str, str]
    """The environment compose gets from make: env and the settings make passes."""
    up: subprocess.CompletedProcess[str]
    first: str
    jaeger: str

    @property
    def compose_command(self) -> list[str]:
        """Compose as `make up` runs it: the docker CLI's plugin, or the standalone binary."""
        return ["docker", "compose"] if shutil.which("docker", path=self.env["PATH"]) else [str(COMPOSE)]

    def compose(self, *args: str, files: tuple[Path, ...] = ()) -> subprocess.CompletedProcess[str]:
        """Compose as `make up` runs it, on this project."""
        done = subprocess.run(
            [*self.compose_command, *(f"--file={f}" for f in files), *args],
            cwd=ROOT,
            env=self.compose_env,
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"compose {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done

    def make(self, target: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", target, *self.make_args],
            cwd=ROOT,
            env=self.env,
            check=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with podman_engine(tmp_path_factory.mktemp("podman")) as running:
        yield running


@pytest.fixture(scope="module")
def stack(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`make up` as a user runs it, with the local base as PYTHON_IMAGE and the Jaeger stand-in; `make down` after."""
    build_jaeger_standin(engine, tmp_path_factory.mktemp("jaeger-standin"))
    project = f"knative-tracing-test-{os.getpid()}"
    first_port, jaeger_port = free_port(), free_port()
    # What make hands compose, given to the test's own compose calls too, so they see the same project.
    settings = {
        "PYTHON_IMAGE": engine.python_image,
        "JAEGER_VERSION": STANDIN_TAG,
        "FIRST_PORT": str(first_port),
        "JAEGER_UI_PORT": str(jaeger_port),
    }
    make_args = [f"{k}={v}" for k, v in settings.items()]
    env = {**compose_env(), **engine.env, "COMPOSE_PROJECT_NAME": project}
    env.pop("DOCKER_BUILDKIT", None)
    if not shutil.which("docker", path=env["PATH"]):
        # No docker CLI on this machine: the standalone Compose v2 binary, the way docs/compose.md gives for it.
        make_args.append(f"COMPOSE={COMPOSE}")
    # Nothing else: with no systemd, the health checks compose waits for are make up's own to run.
    started = time.monotonic()
    up = subprocess.run(
        ["make", "--no-print-directory", "up", *make_args],
        cwd=ROOT,
        env=env,
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1200,
    )
    print(f"make up took {time.monotonic() - started:.0f}s")
    urls = (f"http://127.0.0.1:{first_port}", f"http://127.0.0.1:{jaeger_port}")
    stack = Stack(engine, project, make_args, env, {**env, **settings}, up, *urls)
    try:
        yield stack
    finally:
        down = stack.make("down", timeout=300)
        assert down.returncode == 0, f"make down failed:\n{down.stdout}"
        assert not engine.containers(project), "make down left containers behind"
        # The images each run's builds replaced; the base and the tagged images stay as the next run's cache.
        engine.podman("image", "prune", "--force", check=False)


HEALTHCHECKS = ROOT / "scripts" / "containers" / "podman-healthchecks.sh"


def _healthcheck_loops(project: str) -> list[int]:
    """Processes running podman-healthchecks.sh for the compose project `project` now."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or HEALTHCHECKS.name.encode() not in (proc / "cmdline").read_bytes():
                continue
            if f"COMPOSE_PROJECT_NAME={project}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _proc_status(engine: Engine, container: str) -> dict[str, str]:
    """/proc/1/status of the container's main process, read from inside it."""
    read = "print(open('/proc/1/status').read())"
    text = engine.podman("exec", container, "python", "-c", read).stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _assert_locked_down(engine: Engine, container: str, name: str) -> None:
    """What docker-compose.yml asks for, seen from inside the running process, not just in the settings."""
    status = _proc_status(engine, container)
    assert status["Uid"].split() == ["65532"] * 4, f"{name} does not run as the image's user: {status['Uid']}"
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, f"{name} keeps capabilities: {status}"
    assert status["NoNewPrivs"].strip() == "1", f"{name} can gain privileges"
    write = engine.podman("exec", container, "python", "-c", "open('/app/written', 'w')", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr, f"{name} can write /app: {write}"


def test_make_up_builds_on_the_local_base_and_prints_the_whole_trace(stack: Stack) -> None:
    assert stack.up.returncode == 0, f"make up failed:\n{stack.up.stdout}"
    output = stack.up.stdout
    assert f"building the images on {stack.engine.python_image}" in output
    assert "the engine is Podman: building with the classic builder" in output, output
    if not Path("/run/systemd/system").is_dir():
        assert "make up runs them every 2 s until the stack is up" in output, output
    assert not _healthcheck_loops(stack.project), "make up left its health-check loop running"
    match = re.search(r"trace id ([0-9a-f]{32})", output)
    assert match, output
    trace_id = match.group(1)
    assert f"In Jaeger: {stack.jaeger}/trace/{trace_id}" in output
    # The trace as the stack's backend holds it, checked here again rather than taken from make's word.
    spans = fetch_trace(stack.jaeger, trace_id)
    assert check(spans, LOCAL_HOPS) == [], output
    assert {s.service for s in spans} == set(dockerfiles.SERVICES)

    # PYTHON_IMAGE reached compose's build: every image sits on the local base's layer, not on a pulled one.
    (base_layer,) = stack.engine.inspect(stack.engine.python_image)["RootFS"]["Layers"]
    for service, container in stack.engine.containers(stack.project).items():
        image = stack.engine.inspect(stack.engine.inspect(container)["Image"])
        if service in dockerfiles.SERVICES:
            assert image["RootFS"]["Layers"][0] == base_layer, f"{service} is not built on {stack.engine.python_image}"


@pytest.mark.parametrize("service", dockerfiles.SERVICES)
def test_compose_runs_each_service_locked_down(stack: Stack, service: str) -> None:
    assert stack.up.returncode == 0, "make up failed (see the test above)"
    container = stack.engine.containers(stack.project)[service]
    state = stack.engine.inspect(container)
    assert state["State"]["Health"]["Status"] == "healthy", state["State"]["Health"]
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    assert state["Config"]["User"] == IMAGE_USER
    _assert_locked_down(stack.engine, container, service)


@pytest.mark.parametrize("service", dockerfiles.SERVICES)
def test_each_image_runs_with_dockers_strict_read_only_root(stack: Stack, service: str) -> None:
    """Podman's API gives compose's read_only containers writable tmpfs on /tmp, /run, /var/tmp; Docker does not.
    So each image is also run as Docker would run it: nothing writable at all, the compose file's settings."""
    spec = resolved_compose()["services"][service]
    name = f"{stack.project}-strict-{service}"
    options = ["--read-only", "--read-only-tmpfs=false", *(f"--cap-drop={c}" for c in spec["cap_drop"])]
    options += [f"--security-opt={o}" for o in spec["security_opt"]]
    options += [f"--env={k}={v}" for k, v in spec["environment"].items()]
    # The writable places the compose file itself declares (the broker's volume for its store and dead letters,
    # a tmpfs here), and nothing else.
    declared: list[str] = spec.get("tmpfs", []) + [f"{v['target']}:mode=1777" for v in spec.get("volumes", [])]
    options += [f"--tmpfs={mount}" for mount in declared]
    stack.engine.podman("run", "--detach", "--name", name, *options, spec["image"])
    try:
        probe = spec["healthcheck"]["test"][1:]

        def healthy() -> bool:
            return stack.engine.podman("exec", name, *probe, check=False, timeout=30).returncode == 0

        poll_until(healthy, 60, f"{service}'s health check to pass with a fully read-only root", interval=1)
        mounts = stack.engine.inspect(name)["Mounts"]
        tmpfs = {m["Destination"] for m in mounts if m.get("Type") == "tmpfs"}
        assert tmpfs <= {mount.split(":")[0] for mount in declared}, mounts
        _assert_locked_down(stack.engine, name, service)
        tmp = stack.engine.podman("exec", name, "python", "-c", "open('/tmp/written', 'w')", check=False)
        assert "Read-only file system" in tmp.stderr, f"{service}: /tmp is writable: {tmp}"
        stack.engine.podman("stop", "--time", "15", name)
        assert stack.engine.inspect(name)["State"]["ExitCode"] in CLEAN_EXITS
    finally:
        stack.engine.podman("rm", "--force", name, check=False)


def test_make_images_builds_each_image_on_the_local_base(stack: Stack) -> None:
    """The cluster path's build (`docker build` per service) takes PYTHON_IMAGE too, and picks Podman's builder."""
    if not shutil.which("docker", path=stack.env["PATH"]):
        pytest.skip("no docker CLI on this machine: make images needs it (make up ran with standalone Compose)")
    started = time.monotonic()
    done = stack.make("images", timeout=900)
    assert done.returncode == 0, f"make images failed:\n{done.stdout}"
    print(f"make images took {time.monotonic() - started:.0f}s")
    assert "the engine is Podman: building with the classic builder" in done.stdout, done.stdout
    (base_layer,) = stack.engine.inspect(stack.engine.python_image)["RootFS"]["Layers"]
    for service in dockerfiles.SERVICES:
        image = stack.engine.inspect(f"dev.local/knative-tracing/{service}:0.1.0")
        assert image["RootFS"]["Layers"][0] == base_layer, f"{service} is not built on {stack.engine.python_image}"


def _compose_override(path: Path, services: tuple[str, ...], environment: dict[str, str]) -> Path:
    path.write_text(yaml.safe_dump({"services": {s: {"environment": environment} for s in services}}))
    return path


def test_stopping_the_stack_exits_cleanly_and_flushes_every_services_spans(stack: Stack, tmp_path: Path) -> None:
    """With a 10-minute batch delay, a request's spans can reach the backend only through each service's shutdown
    flush: `docker compose stop` must bring all of them, and every service must exit 0 or 143.

    The services export to the stand-in's address rather than its name here. Podman 4.3 (Debian 12) sometimes
    drops a container's DNS queries while the container stopped just before it is torn down (measured: 2 stops in
    8 hung in getaddrinfo('jaeger') until compose's SIGKILL); with Docker's DNS that does not happen, and a flush
    that had to look the name up at that moment would test Podman, not the services.
    """
    assert stack.up.returncode == 0, "make up failed (see the first test)"
    services = dockerfiles.SERVICES
    jaeger = stack.engine.inspect(stack.engine.containers(stack.project)["jaeger"])["NetworkSettings"]["Networks"]
    (address,) = {network["IPAddress"] for network in jaeger.values()}
    environment = {"OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{address}:4318"}
    held = _compose_override(tmp_path / "hold-spans.yml", services, environment)
    # --no-deps: the running stand-in stays as it is, with its address and the spans it holds. `--wait` needs the
    # health checks run, as make up has them run (this compose call is the test's own, not a user's).
    healthchecks = subprocess.Popen(
        [str(HEALTHCHECKS), str(os.getpid()), *stack.compose_command], env=stack.compose_env
    )
    try:
        stack.compose(
            "up", "--detach", "--wait", "--no-build", "--no-deps", *services, files=(ROOT / "docker-compose.yml", held)
        )
    finally:
        healthchecks.terminate()
        healthchecks.wait(timeout=30)
    reply = httpx.get(f"{stack.first}/", timeout=30)
    assert reply.status_code == 200, reply.text
    trace_id = reply.json()["trace_id"]

    def second_got_it() -> bool:
        return trace_id in stack.compose("logs", "second").stdout

    poll_until(second_got_it, 30, f"second to log trace {trace_id}", interval=0.5)
    assert fetch_trace(stack.jaeger, trace_id) == [], "spans left before the stop: the flush would not be tested"

    stack.compose("stop", *services, files=(ROOT / "docker-compose.yml", held))
    containers = stack.engine.containers(stack.project)
    for service in services:
        state: dict[str, Any] = stack.engine.inspect(containers[service])["State"]
        logs = stack.compose("logs", service, "jaeger").stdout
        assert state["Status"] == "exited" and state["ExitCode"] in CLEAN_EXITS, f"{service}: {state}\n{logs}"
        assert not state["OOMKilled"], service

    spans = fetch_trace(stack.jaeger, trace_id)
    assert check(spans, LOCAL_HOPS) == [], json.dumps([s.name for s in spans])
    assert {s.service for s in spans} == set(services)


FRESH_SHELL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _podman_recipe() -> list[str]:
    """The commands of docs/compose.md's Podman recipe (the console block after "from nothing"), as written."""
    doc = (ROOT / "docs" / "compose.md").read_text()
    block = doc.split("from nothing", 1)[1].split("```console\n", 1)[1].split("```", 1)[0]
    commands = [line.removeprefix("$ ") for line in block.splitlines() if line.startswith("$ ")]
    assert [c.split("#")[0].strip() for c in commands][-3:-1] == ["make up", "make down"], commands
    return commands


def test_the_podman_recipe_in_the_docs_works_pasted_into_a_fresh_shell(stack: Stack) -> None:
    """docs/compose.md's lines, run as they are in a shell with nothing set but HOME and a plain PATH. Only what this
    machine cannot do differently comes from the environment, which make reads as it reads its own variables:
    other ports (a person's 8080 may be in use here) and the Jaeger stand-in (the real image cannot be pulled)."""
    project = f"{stack.project}-recipe"
    env = {
        "HOME": os.environ.get("HOME", "/root"),
        "PATH": FRESH_SHELL_PATH,
        "FIRST_PORT": str(free_port()),
        "JAEGER_UI_PORT": str(free_port()),
        "JAEGER_VERSION": STANDIN_TAG,
        "COMPOSE_PROJECT_NAME": project,
    }
    script = "set -e\n" + "\n".join(_podman_recipe()) + "\n"
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        cwd=ROOT,
        env=env,
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, f"the recipe failed:\n{script}\n{done.stdout}"
    assert f"In Jaeger: http://127.0.0.1:{env['JAEGER_UI_PORT']}/trace/" in done.stdout, done.stdout
    assert not stack.engine.containers(project), "make down left containers behind"
    assert not _healthcheck_loops(project)
