"""docs/workshop.md, run: every checked local step's commands run as written (on free ports) and show the
output the walkthrough promises. The steps run side by side; each one is its own processes and ports."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.workshop.walkthrough import DOC, Background, Ports, Step, missing, run, steps
from tools.stack import ROOT

STEPS = steps(DOC.read_text())
PARALLEL_STEPS = 3


def _run_step(step: Step, log_dir: Path) -> list[tuple[str, str]]:
    """(command, output) for each command of `step`."""
    ports = Ports.free()
    if step.how == "":
        return [(c.text, run(c.text, ports)) for c in step.commands]
    if step.how == "while make run":
        demo = Background("make run", ports, log_dir / f"demo-{step.line}.log")
        try:
            demo.wait_for("Send more:", 60)
            return [(c.text, run(c.text, ports)) for c in step.commands]
        finally:
            demo.stop()
    serves = re.fullmatch(r"serves (\d+)", step.how)
    if serves:
        (command,) = step.commands
        server = Background(command.text, ports, log_dir / f"serves-{step.line}.log", {"PORT": str(ports.first)})
        try:
            server.wait_healthy(ports.first, 60)
        finally:
            server.stop()
        return [(command.text, server.output(port_shown_as=(ports.first, int(serves.group(1)))))]
    raise ValueError(f"docs/workshop.md line {step.line}: unknown check {step.how!r}")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Future[list[tuple[str, str]]]]]:
    """Each step's run, started for all steps at once: a step that cannot run fails its own test only."""
    log_dir = tmp_path_factory.mktemp("walkthrough")
    # A few at a time: each step is three services and a receiver, and the suite must fit on 2 cores.
    with ThreadPoolExecutor(max_workers=PARALLEL_STEPS) as pool:
        yield {step.line: pool.submit(_run_step, step, log_dir) for step in STEPS}


def test_the_walkthrough_has_checked_steps() -> None:
    hows = {step.how.split()[0] if step.how else "" for step in STEPS}
    assert {"", "while", "serves"} <= hows, "each kind of checked step is in use, so each kind is tested"
    assert any("BROKEN=1" in c.text for step in STEPS for c in step.commands)
    assert any("EXTENSION=1" in c.text for step in STEPS for c in step.commands)
    assert any("ZERO_CODE=1" in c.text for step in STEPS for c in step.commands)


@pytest.mark.parametrize("step", STEPS, ids=[step.name for step in STEPS])
def test_step_shows_what_the_walkthrough_says(step: Step, outputs: dict[int, Future[list[tuple[str, str]]]]) -> None:
    for command, (text, output) in zip(step.commands, outputs[step.line].result(), strict=True):
        assert command.text == text
        absent = missing(command.expected, output, keep=command.text)
        assert absent is None, f"`{text}` did not show:\n  {absent}\nIt showed:\n{output}"


def test_a_changed_output_is_caught() -> None:
    """The comparison can fail: a span count or a name that differs is a mismatch, ids and times are not."""
    real = "trace 0af7651916cd43dd8448eb211c80319c  (9 spans, 41.1 ms)\nfirst: GET /  SERVER  24.67 ms  |███  |"
    assert missing(("trace 4bf92f3577b34da6a3ce929d0e0e4736 (9 spans, 3.0 ms)",), real, keep="") is None
    assert missing(("trace 4bf92f3577b34da6a3ce929d0e0e4736 (8 spans, 3.0 ms)",), real, keep="") is not None
    assert missing(("first: GET /  CLIENT  1.00 ms  |█|",), real, keep="") is not None
    # An id the command itself sent must come back as that id.
    sent = "curl -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'"
    assert missing(("trace 4bf92f3577b34da6a3ce929d0e0e4736 (9 spans, 1.0 ms)",), real, keep=sent) is not None


def test_every_make_target_the_walkthrough_names_exists() -> None:
    listed = subprocess.run(
        ["make", "-s", "help"], check=True, cwd=ROOT, capture_output=True, text=True, timeout=30
    ).stdout
    targets = set(re.findall(r"(?:`|\$ )make ([a-z][a-z-]*)", DOC.read_text()))
    assert targets, "the walkthrough names no make target"
    unknown = sorted(t for t in targets if f"make {t} " not in listed)
    assert not unknown, f"docs/workshop.md names make targets that make help does not list: {unknown}"
