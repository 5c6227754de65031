"""A real HTTP server on loopback that plays a misbehaving peer (broker, subscriber, trace backend).

Each path has a script: answer a status at once, after a delay, or never. Every request is recorded with its
arrival time, so a test can check what arrived and when (retries, backoff, a delivery that finished during
shutdown).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tools.http_server import HttpServer

NEVER = -1
"""A status meaning: read the request, then never answer (until the peer stops)."""
RESET = -2
"""A status meaning: read the request, then reset the connection (TCP RST, no answer)."""


@dataclass(frozen=True)
class Script:
    status: int
    delay: float = 0.0


@dataclass(frozen=True)
class Arrival:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """time.monotonic() when the request had been read."""


@dataclass
class Peer:
    scripts: dict[str, Script]
    """Path -> how to answer; other paths get 404."""
    arrivals: list[Arrival] = field(default_factory=list)
    answered: list[Arrival] = field(default_factory=list)
    """Requests whose answer was written completely."""

    def __post_init__(self) -> None:
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = HttpServer(_handler(self))

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> Peer:
        self._server.start("peer")
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.stop()

    def at(self, path: str) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if a.path == path]

    def _record(self, arrival: Arrival, into: list[Arrival]) -> None:
        with self._lock:
            into.append(arrival)

    def __enter__(self) -> Peer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(peer: Peer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            path = self.path.split("?", 1)[0]
            arrival = Arrival(path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
            peer._record(arrival, peer.arrivals)
            script = peer.scripts.get(path, Script(404))
            if script.status == RESET:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if script.status == NEVER:
                peer._stopping.wait(60)
                self.close_connection = True
                return
            if script.delay:
                time.sleep(script.delay)
            self.send_response(script.status)
            self.send_header("content-length", "0")
            self.end_headers()
            peer._record(arrival, peer.answered)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read the arrivals instead."""

    return Handler
