"""The launcher trusts only a service it started: a 200 from another process that holds the port (a demo left
running, another engineer's service) is not taken for the service's health."""

from __future__ import annotations

import os
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tools.http_server import HttpServer
from tools.stack import free_port, listens, start_service, wait_all_healthy


class _AlwaysHealthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def test_a_stranger_answering_on_the_port_is_not_our_service(tmp_path: Path) -> None:
    stranger = HttpServer(_AlwaysHealthy, port=free_port())
    stranger.start("stranger")
    try:
        assert listens(os.getpid(), stranger.port), "this process holds the stranger's socket"
        second = start_service("second", stranger.port, {"OTEL_TRACES_EXPORTER": "none"}, tmp_path / "second.log")
        try:
            # second cannot bind the port and exits: the launcher says so instead of calling the stranger healthy.
            with pytest.raises(RuntimeError, match="second did not start"):
                wait_all_healthy([second], timeout=30)
            assert "address already in use" in second.log().lower()
        finally:
            second.process.kill()
            second.process.wait()
    finally:
        stranger.stop()


def test_our_own_service_is_trusted(tmp_path: Path) -> None:
    second = start_service("second", free_port(), {"OTEL_TRACES_EXPORTER": "none"}, tmp_path / "second.log")
    try:
        wait_all_healthy([second], timeout=30)
        assert listens(second.process.pid, second.port)
    finally:
        second.process.kill()
        second.process.wait()
