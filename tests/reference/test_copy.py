"""The copy test: first/ and second/, with only the lesson module they import, copied into an empty folder and run
on the design's packages alone (pinned and hashed from the runtime lock) with the stock configuration, make one
trace from a request into first through to second's log line. What a reader copies into a project works there."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import poll_until
from tools.otlp_receiver import Receiver
from tools.spans import Span
from tools.stack import ROOT, Service, free_port, running_all

DESIGN = ("fastapi", "uvicorn", "httpx", "cloudevents", "opentelemetry-distro", "opentelemetry-exporter-otlp")
COPIED = ("first", "second", "event_tracing")


def _design_venv(where: Path) -> Path:
    """A venv with the design's packages and what they need, at the runtime lock's versions, hash-checked."""
    wanted = where / "design.in"
    wanted.write_text("\n".join(DESIGN) + "\n")
    lock = where / "design.txt"
    uv = Path(sys.executable).parent / "uv"
    subprocess.run(
        [
            str(uv),
            "pip",
            "compile",
            "--quiet",
            "--python-version",
            "3.11",
            "--generate-hashes",
            "-c",
            str(ROOT / "requirements" / "runtime.txt"),
            str(wanted),
            "-o",
            str(lock),
        ],
        check=True,
        timeout=300,
    )
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--require-hashes",
            "--no-deps",
            "-r",
            str(lock),
        ],
        check=True,
        timeout=600,
    )
    return venv


def _start(venv: Path, copy: Path, name: str, port: int, *, env: dict[str, str], log: Path) -> Service:
    # Only what a user of the copy would set: the standard variables, nothing of this project's.
    clean = {"PATH": "/usr/bin:/bin", "HOST": "127.0.0.1", "PORT": str(port), "PYTHONUNBUFFERED": "1", **env}
    process = subprocess.Popen(
        [str(venv / "bin" / "python"), "-m", name],
        cwd=copy,
        env=clean,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Service(name, port, process, log)


@pytest.mark.timeout(900)
def test_first_and_second_copied_alone_make_one_trace(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    for name in COPIED:
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "Dockerfile"))
    venv = _design_venv(tmp_path)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "knative-tracing" not in installed and "opentelemetry-instrumentation-fastapi" not in installed
    receiver = Receiver().start()
    try:
        stock = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        ports = {"first": free_port(), "second": free_port()}
        services = {
            "second": _start(
                venv,
                copy,
                "second",
                ports["second"],
                env={**stock, "OTEL_SERVICE_NAME": "second"},
                log=tmp_path / "second.log",
            ),
            # No broker in the copy: first posts its event straight to second.
            "first": _start(
                venv,
                copy,
                "first",
                ports["first"],
                env={**stock, "OTEL_SERVICE_NAME": "first", "K_SINK": f"http://127.0.0.1:{ports['second']}/"},
                log=tmp_path / "first.log",
            ),
        }
        with running_all(services, timeout=60):
            reply = httpx.get(f"http://127.0.0.1:{ports['first']}/", timeout=10)
            assert reply.status_code == 200, reply.text
            trace_id, event_id = reply.json()["trace_id"], reply.json()["event_id"]
            line = f"processed event {event_id}, traceid={trace_id}"
            poll_until(lambda: line in services["second"].log(), 15, f"second's log line {line!r}")

            def both_services() -> list[Span] | None:
                found = receiver.spans(trace_id)
                return found if {s.service for s in found} >= {"first", "second"} else None

            spans = poll_until(both_services, 15, f"spans of first and second in trace {trace_id}")
    finally:
        receiver.stop()
    kinds = {(s.service, s.kind) for s in spans}
    assert {("first", "SERVER"), ("first", "PRODUCER"), ("first", "CLIENT")} <= kinds, kinds
    assert {("second", "SERVER"), ("second", "CONSUMER")} <= kinds, kinds
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
