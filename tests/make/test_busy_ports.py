"""Every port `make run` needs, when another program holds it, fails within seconds naming the port and the
exact `make run` line to type instead, on ports that are free."""

from __future__ import annotations

import re
import socket
import subprocess
import time

import pytest

from tools.stack import ROOT, free_port, in_use

# Which port to hold: first's own, second's and the broker's (first + 1 and + 2), the OTLP receiver's.
CASES = {"first": 0, "second": 1, "broker": 2, "the OTLP receiver": None}


@pytest.mark.parametrize("holder", CASES)
def test_a_busy_port_names_the_command_to_type(holder: str) -> None:
    port, otlp_port = free_port(3), free_port()
    offset = CASES[holder]
    held = otlp_port if offset is None else port + offset
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", held))
        other_program.listen()
        started = time.monotonic()
        done = subprocess.run(
            ["make", "--no-print-directory", "run", "BROKEN=1", f"RUN_FLAGS=--port {port} --otlp-port {otlp_port}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        took = time.monotonic() - started
        assert done.returncode == 2, done.stdout + done.stderr
        assert took < 10, f"took {took:.1f} s"
        assert f"port {held} ({holder}) on 127.0.0.1 already in use" in done.stderr, done.stderr
        typed = re.search(r'^    (make run BROKEN=1 RUN_FLAGS="--port (\d+) --otlp-port (\d+)")$', done.stderr, re.M)
        assert typed, done.stderr
        new_port, new_otlp_port = int(typed.group(2)), int(typed.group(3))
        if offset is None:
            assert new_port == port and new_otlp_port != otlp_port
            assert not in_use(new_otlp_port)
        else:
            assert new_otlp_port == otlp_port and new_port != port
            assert not any(in_use(p) for p in range(new_port, new_port + 3))
    assert "starting second" not in done.stdout, "nothing may start on a taken port"
