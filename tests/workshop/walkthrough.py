"""Reading and running the checked steps of docs/workshop.md, so the walkthrough cannot drift from the demo.

A step is checked when an HTML comment right before its ```console block says so:

- `<!-- checked -->`: each `$ command` runs to completion (`make run` stops after its first trace);
- `<!-- checked: while make run -->`: the commands run while `make run` serves in the background;
- `<!-- checked: serves PORT -->`: the one command starts a server; it runs until /healthz answers on PORT.

The lines under a command are the output the attendee should see, trimmed: each must appear in the real output,
in order, after normalising what differs on every run (ids, times, durations, bars, pids, ports). A line of
`...` stands for lines left out; a line ending in `...` for the rest of a line. A trace or span id written in
the command itself is kept, so the output must show that very id.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tools.stack import ROOT, free_port, wait_healthy

DOC = ROOT / "docs" / "workshop.md"
DOC_PORTS = {"first": 8080, "second": 8081, "broker": 8082, "hop": 8083}
DOC_OTLP_PORT = 4318
SKIP = "..."
_BLOCK = re.compile(r"<!-- checked(?:: (?P<how>[^>]*?))? -->\s*\n```console\n(?P<body>.*?)\n```", re.S)


@dataclass(frozen=True)
class Command:
    text: str
    expected: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    line: int
    how: str
    commands: tuple[Command, ...]

    @property
    def name(self) -> str:
        return f"line {self.line}: {self.commands[0].text}"


def steps(text: str) -> list[Step]:
    found = []
    for match in _BLOCK.finditer(text):
        line = text[: match.start()].count("\n") + 1
        commands: list[Command] = []
        lines = match.group("body").splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                raise ValueError(f"docs/workshop.md line {line}: a checked block must start with a $ command")
            command = lines[i][2:]
            while command.endswith("\\"):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            i += 1
            expected = []
            while i < len(lines) and not lines[i].startswith("$ "):
                expected.append(lines[i])
                i += 1
            commands.append(Command(command, tuple(expected)))
        found.append(Step(line, (match.group("how") or "").strip(), tuple(commands)))
    return found


@dataclass(frozen=True)
class Ports:
    """The real ports a step runs on, and how they map to the ones the walkthrough shows."""

    first: int
    otlp: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(len(DOC_PORTS)), free_port())

    @property
    def run_flags(self) -> str:
        return f"--port {self.first} --otlp-port {self.otlp}"

    def real_to_doc(self) -> dict[str, str]:
        mapping = {str(self.first + i): str(port) for i, port in enumerate(DOC_PORTS.values())}
        return {**mapping, str(self.otlp): str(DOC_OTLP_PORT)}

    def to_real(self, command: str) -> str:
        for real, doc in self.real_to_doc().items():
            command = re.sub(rf"(?<=127\.0\.0\.1:){doc}\b", real, command)
        return command

    def to_doc(self, output: str) -> str:
        mapping = self.real_to_doc()
        return re.sub(r"\b\d{4,5}\b", lambda m: mapping.get(m.group(), m.group()), output)


_VARYING = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "<timestamp>"),
    (re.compile(r"\b\d\d:\d\d:\d\d\b"), "<time>"),
    (re.compile(r"\b\d+\.\d+ ms\b"), "<n> ms"),
    (re.compile(r"\|[ █]*\|"), "|<bar>|"),
    (re.compile(r"process \[\d+\]"), "process [<pid>]"),
    (re.compile(r"/tmp/knative-tracing-\w+"), "<log dir>"),
    (re.compile(r"Content-Length: \d+"), "Content-Length: <n>"),
]


def normalise(line: str, keep: str = "") -> str:
    """`line` with what differs between runs replaced by placeholders; ids that occur in `keep` stay."""

    def ids(match: re.Match[str]) -> str:
        value = match.group()
        if value in keep:
            return value
        return "<trace-id>" if len(value) == 32 else "<span-id>"

    for pattern, placeholder in _VARYING[:1]:
        line = pattern.sub(placeholder, line)
    line = re.sub(r"\b[0-9a-f]{32}\b|\b[0-9a-f]{16}\b", ids, line)
    for pattern, placeholder in _VARYING[1:]:
        line = pattern.sub(placeholder, line)
    return " ".join(line.split())


def missing(expected: tuple[str, ...], output: str, keep: str) -> str | None:
    """The first expected line not found (in order) in `output`, or None when all are."""
    actual = [normalise(line, keep) for line in output.splitlines()]
    position = 0
    for line in expected:
        wanted = normalise(line, keep)
        if not wanted or wanted == SKIP:
            continue
        # A line cut short with "..." matches any line that starts the same way.
        prefix = wanted.removesuffix(SKIP).rstrip() if wanted.endswith(SKIP) else None
        found = next(
            (
                i
                for i in range(position, len(actual))
                if actual[i] == wanted or (prefix is not None and actual[i].startswith(prefix))
            ),
            None,
        )
        if found is None:
            return line
        position = found + 1
    return None


def environment(ports: Ports, *, once: bool) -> dict[str, str]:
    """The environment a step runs in: `make run` on the step's own ports (RUN_FLAGS reaches make from here)."""
    flags = ("--once " if once else "") + ports.run_flags
    return {**os.environ, "RUN_FLAGS": flags}


def run(command: str, ports: Ports, timeout: float = 90) -> str:
    result = subprocess.run(
        ["bash", "-c", ports.to_real(command)],
        check=False,
        cwd=ROOT,
        env=environment(ports, once=True),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    output = ports.to_doc(result.stdout)
    if result.returncode != 0:
        output += f"\n[exit status {result.returncode}]"
    return output


class Background:
    """A command running in its own process group, its output going to a file, stopped like Ctrl-C would."""

    def __init__(self, command: str, ports: Ports, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._ports = ports
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                ["bash", "-c", ports.to_real(command)],
                cwd=ROOT,
                env={**environment(ports, once=False), **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self, port_shown_as: tuple[int, int] | None = None) -> str:
        """What it printed so far, ports as the walkthrough shows them (or `real` shown as `doc` only)."""
        text = self.log.read_text(errors="replace")
        if port_shown_as is None:
            return self._ports.to_doc(text)
        real, doc = port_shown_as
        return re.sub(rf"\b{real}\b", str(doc), text)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"Timed out waiting for {text!r} in:\n{self.output()}")
            time.sleep(0.1)

    def wait_healthy(self, port: int, timeout: float) -> None:
        try:
            wait_healthy(f"http://127.0.0.1:{port}/healthz", timeout, self.process)
        except (TimeoutError, RuntimeError) as exc:
            raise AssertionError(f"{exc}:\n{self.output()}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
