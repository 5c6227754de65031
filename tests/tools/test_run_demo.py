"""`make run` as a newcomer sees it: the trace tree, the logs, a curl line, a tree for every later request in
the order they were sent (failed ones marked), a line when a service dies, and a clean Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tools.stack import ROOT, free_port

W3C_IDS = [f"{n:032x}" for n in (0xA1, 0xA2, 0xA3)]


class Output:
    """run_demo's output, read line by line as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._stdout = process.stdout
        self.lines: list[str] = []

    def until(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if text in line:
                return self.text
        raise AssertionError(f"Timed out after {timeout:.0f}s waiting for: {text!r} in:\n{self.text}")

    @property
    def text(self) -> str:
        return "".join(self.lines)


def _child(parent: int, module: str) -> int:
    """The pid of `parent`'s child process running `python -m <module>`."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and module.encode() in argv and b"-m" in argv:
            return int(proc.name)
    raise AssertionError(f"no child of {parent} runs {module}")


def test_make_run_reports_every_request_in_order_and_stops_cleanly_on_ctrl_c() -> None:
    port = free_port(3)
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.run_demo", "--port", str(port), "--otlp-port", str(free_port())],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process)
    try:
        text = output.until("Ctrl-C stops", 60)
        tree = [line for line in text.splitlines() if "|" in line and " ms " in line]
        assert any("first: send dev.knative.tracing.hello" in line and "PRODUCER" in line for line in tree), text
        assert any("broker: broker:default.default" in line for line in tree), text
        assert any("broker: trigger:first-to-second.default" in line for line in tree), text
        assert any("second: process dev.knative.tracing.hello" in line and "CONSUMER" in line for line in tree)
        assert "(9 spans," in text
        assert "Request headers:" in text
        assert "Event received: Context Attributes," in text
        assert f"curl -i http://127.0.0.1:{port}/" in text
        for noise in ("Started server process", "Waiting for application startup", "Uvicorn running on"):
            assert noise not in text, f"uvicorn start-up noise in make run's output: {noise}"

        first = f"http://127.0.0.1:{port}/"
        for trace_id in W3C_IDS:
            reply = httpx.get(first, headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}, timeout=10)
            assert reply.status_code == 200
        output.until(f"trace {W3C_IDS[-1]}", 30)

        # The broker dies: make run says so, and the next request's tree comes out marked.
        broker = _child(process.pid, "broker")
        subprocess.run(["kill", "-KILL", str(broker)], check=True)
        output.until("error: broker exited", 10)
        assert httpx.get(first, timeout=10).status_code == 503
        output.until("FAILED: first answered 503", 30)
        text = output.until("└─ first: POST", 10)  # the marked tree's last line
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    text += rest
    assert process.returncode == 0, text

    order = [text.index(f"trace {trace_id}") for trace_id in W3C_IDS]
    assert order == sorted(order), "trees must come in the order the requests were sent"
    assert "error: broker exited (stopped by SIGKILL)" in text
    failed = text[text.index("FAILED: first answered 503") :]
    assert "the event never reached broker or second" in failed.splitlines()[0]
    assert "first: GET /" in failed and "| !" in failed
    assert "stopped: " in text
    assert "Traceback" not in text
