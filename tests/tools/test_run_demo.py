"""`make run` as a newcomer sees it: the trace tree, the logs, a curl line, and a clean Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from tools.stack import ROOT, free_port


def _three_free_ports() -> int:
    """A port p with p+1 and p+2 free too (run_demo puts second and broker there)."""
    for _ in range(50):
        base = free_port()
        try:
            for offset in (1, 2):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise AssertionError("no three consecutive free ports on loopback")


def test_make_run_prints_the_trace_and_stops_cleanly_on_ctrl_c() -> None:
    port = _three_free_ports()
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.run_demo", "--port", str(port), "--otlp-port", str(free_port())],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        if "Ctrl-C stops" in line:
            break
    text = "".join(output)
    assert "Ctrl-C stops" in text, text
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=30)
    text += rest
    assert process.returncode == 0, text

    tree = [line for line in text.splitlines() if "|" in line and " ms " in line]
    assert any("first: send dev.knative.tracing.hello" in line and "PRODUCER" in line for line in tree), text
    assert any("broker: broker:default.default" in line for line in tree), text
    assert any("broker: trigger:first-to-second.default" in line for line in tree), text
    assert any("second: process dev.knative.tracing.hello" in line and "CONSUMER" in line for line in tree), text
    assert "Request headers:" in text
    assert "Event received: Context Attributes," in text
    assert f"curl -i http://127.0.0.1:{port}/" in text
    assert "stopped: " in text
    assert "Traceback" not in text
