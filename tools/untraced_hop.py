"""A hop that does not propagate trace context: forwards every request to `HOP_TARGET` without its trace headers.

Some intermediaries forward events but not the W3C/B3 headers (a legacy dispatcher, an untraced proxy, a
queue bridge). `make run UNTRACED_HOP=1` puts this one between the broker and second, to show what the
CloudEvents Distributed Tracing extension is for. It is not traced itself and changes nothing else: body,
CloudEvent headers (`ce-traceparent` included) and the answer pass through as they are.

Run alone: `HOP_TARGET=http://127.0.0.1:8081 PORT=8083 python -m tools.untraced_hop`; `GET /healthz` is its own.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler
from typing import Any, Final

import httpx

from plugins.propagators import TRACE_HEADERS as TRACE_CONTEXT_HEADERS
from plugins.settings import env_int, env_str, fail_startup
from tools.http_server import HttpServer

TRACE_HEADERS: Final = TRACE_CONTEXT_HEADERS | {"baggage"}
"""What this hop drops: every header the services' propagators read (declared once, in common/), and baggage."""
# Per-connection headers, which a proxy must not forward (RFC 9110, 7.6.1); httpx sets its own.
_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host"}
)


def _handler(target: str, client: httpx.Client) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._reply(200, b'{"status":"ok"}', {"content-type": "application/json"})
            else:
                self._forward()

        def do_POST(self) -> None:
            self._forward()

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            kept = {k: v for k, v in self.headers.items() if k.lower() not in TRACE_HEADERS | _HOP_BY_HOP}
            dropped = sorted({k.lower() for k in self.headers if k.lower() in TRACE_HEADERS})
            try:
                reply = client.request(self.command, target + self.path, headers=kept, content=body)
            except httpx.HTTPError as exc:
                message = {"error": f"untraced hop: {target} is unreachable ({type(exc).__name__})"}
                self._reply(502, json.dumps(message).encode(), {"content-type": "application/json"})
                return
            gone = ", ".join(dropped) or "none"
            print(f"untraced hop: {self.command} {self.path} -> {target}: {reply.status_code}, dropped {gone}")
            headers = {k: v for k, v in reply.headers.items() if k.lower() not in _HOP_BY_HOP | {"content-length"}}
            self._reply(reply.status_code, reply.content, headers)

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: `_forward` prints one line per request that says what was dropped."""

    return Handler


def main() -> int:
    target = env_str("HOP_TARGET", "").rstrip("/")
    if not target.startswith(("http://", "https://")):
        fail_startup(f"HOP_TARGET={target!r} must be the URL to forward to, such as http://127.0.0.1:8081")
    port = env_int("PORT", 8083)
    host = env_str("HOST", "127.0.0.1")
    with httpx.Client(timeout=30) as client:
        server = HttpServer(_handler(target, client), host, port)
        print(f"untraced hop on http://{host}:{port} -> {target} (drops trace headers)", flush=True)
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
