"""The lifecycle the small stdlib HTTP servers share (the OTLP receiver, the untraced hop, the tests' peers):
bound at once (so the port is known before anything is sent), served from a daemon thread or in the
foreground, each connection on a daemon thread, stopped and closed in one call."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HttpServer:
    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = ThreadingHTTPServer((host, port), handler)
        # A connection left open by a client must not keep the process alive at exit.
        self._server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str) -> None:
        """Serve from a daemon thread called `name`; returns at once."""
        threading.Thread(target=self._server.serve_forever, name=name, daemon=True).start()

    def serve_forever(self) -> None:
        """Serve in this thread until the process ends."""
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
