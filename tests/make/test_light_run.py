"""`make run` on a fresh clone installs only the runtime lock (hashed), well under 200 MB, and the demo works on
it: nothing `make run` does may need a development tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.make.sandbox import Sandbox, du_mb
from tools.stack import free_port

LIMIT_MB = 200


@pytest.mark.timeout(600)
def test_make_run_on_a_fresh_clone_installs_only_the_runtime_lock(tmp_path: Path) -> None:
    sandbox = Sandbox.create(tmp_path)
    port, otlp_port = free_port(3), free_port()
    made = sandbox.make("run", f"RUN_FLAGS=--once --port {port} --otlp-port {otlp_port}", timeout=540)
    assert made.returncode == 0, made.output
    assert "installing the runtime lock (requirements/runtime.txt)" in made.stdout
    assert "development lock" not in made.stdout
    assert "second: process dev.knative.tracing.hello" in made.stdout, made.output
    size = du_mb(sandbox.venv)
    assert size <= LIMIT_MB, f"make run installed {size:.0f} MB (limit {LIMIT_MB})"
    for tool in ("ruff", "mypy", "pytest", "kubectl", "hadolint"):
        assert not (sandbox.venv / "bin" / tool).exists(), f"make run installed {tool}, a development tool"
    print(f"make run installed {size:.0f} MB into .venv in {made.seconds:.0f} s")
