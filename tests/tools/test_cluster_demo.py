"""`make demo` against a real first (the local stack stands in for Kourier: first ignores the Host header)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools.cluster_demo import main
from tools.stack import Stack, free_port

HOST = "first.default.127.0.0.1.sslip.io"


def test_demo_prints_and_saves_the_trace_id(stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    id_file = tmp_path / "state" / "last-trace-id"
    code = main(["--ingress", stack.url("first"), "--host", HOST, "--trace-id-file", str(id_file)])
    out = capsys.readouterr().out
    assert code == 0, out
    trace_id = id_file.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert f"trace id: {trace_id}" in out
    assert f"http://127.0.0.1:16686/trace/{trace_id}" in out
    port = stack.url("first").rsplit(":", 1)[1]
    assert f"GET http://{HOST}:{port}/" in out, "the browser URL names the route and Kourier's port"


def test_demo_says_what_to_check_when_nothing_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    id_file = tmp_path / "last-trace-id"
    assert main(["--ingress", dead, "--host", HOST, "--trace-id-file", str(id_file), "--wait", "0"]) == 1
    err = capsys.readouterr().err
    assert f"first did not answer through Kourier at {dead} within 0s" in err
    assert "make cluster deploy" in err and "KIND_HTTP_PORT" in err
    assert not id_file.exists()
