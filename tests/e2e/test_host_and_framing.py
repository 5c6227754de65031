"""The request head as RFC 9112 says (plugins/server.py): one Host, a valid `host[:port]`, none missing on
HTTP/1.1, each refusal a JSON 400 naming the problem, as for malformed framing; and no redirect sends a client on
to a host it chose itself (plugins/receive.py, broker/app.py)."""

from __future__ import annotations

import json
import socket

import pytest

from tests.support import cloudevent_headers
from tools.stack import Stack


def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the answer's status, headers (lower-case names) and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
    return int(status_line.split()[1]), headers, body


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


BAD_HOSTS = {
    "two Host headers": b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "a space in Host": b"GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n",
    "no Host on HTTP/1.1": b"GET /healthz HTTP/1.1\r\nUser-Agent: t\r\n\r\n",
    "a path in Host": b"GET /healthz HTTP/1.1\r\nHost: a/b\r\n\r\n",
}


@pytest.mark.parametrize("service", ["first", "broker", "second"])
@pytest.mark.parametrize("case", BAD_HOSTS)
def test_a_host_rfc_9112_refuses_gets_a_json_400(stack: Stack, service: str, case: str) -> None:
    status, headers, body = _exchange(stack.services[service].port, BAD_HOSTS[case])
    assert status == 400, (status, body)
    assert headers["content-type"] == "application/json"
    assert "Host" in json.loads(body)["error"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\n\r\n",
    ],
    ids=["name", "address and port", "IPv6 literal", "HTTP/1.0 without Host"],
)
def test_a_valid_host_is_served(stack: Stack, request_bytes: bytes) -> None:
    status, _, body = _exchange(stack.services["second"].port, request_bytes)
    assert status == 200, body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["Content-Length not a number", "bad request line", "bad chunk size"],
)
def test_malformed_framing_gets_the_json_400(stack: Stack, request_bytes: bytes) -> None:
    status, headers, body = _exchange(stack.services["second"].port, request_bytes)
    assert status == 400, body
    assert headers["content-type"] == "application/json"
    assert "RFC 9112" in json.loads(body)["error"]


@pytest.mark.parametrize(
    ("service", "method", "path"),
    [
        ("broker", "POST", "/default/default/"),
        ("second", "POST", "/dead-letter/"),
        ("second", "GET", "/healthz/"),
        ("first", "GET", "/healthz/"),
    ],
)
def test_no_redirect_to_the_host_the_client_names(stack: Stack, service: str, method: str, path: str) -> None:
    # A valid event, so that second's strict reader lets the request through to the app's routing.
    event = "".join(f"{name}: {value}\r\n" for name, value in cloudevent_headers().items())
    request = f"{method} {path} HTTP/1.1\r\nHost: evil.example\r\n{event}Content-Length: 1\r\n\r\nx".encode()
    status, headers, _ = _exchange(stack.services[service].port, request)
    assert "evil.example" not in headers.get("location", ""), (status, headers)
    if 300 <= status < 400:
        assert headers["location"].startswith("/") and not headers["location"].startswith("//"), headers
        # The redirect still works, on the service the client reached.
        assert headers["location"] == path.rstrip("/"), headers
