"""Hostile input at every service of the running stack: answered with a 2xx or a 4xx naming the problem, never a
500; no log line forged, no credential logged. Each row of HOSTILE is one attack: add one by adding a row."""

from __future__ import annotations

import json
import re
import secrets
import socket
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support import cloudevent_headers, poll_until
from tools.stack import Stack

SECRET = f"s3cr3t{secrets.token_hex(8)}"
"""Put in every credential below: it must appear in no log."""
FORGED = f"FORGED{secrets.token_hex(4)}"
"""A log line that starts with this (after the time stamp) was written by a client."""
TRACEPARENT = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
_LINE_START = re.compile(r"^\d{2}:\d{2}:\d{2} \S+\s+[A-Z]+ ")
_FORGERY = f"hi\n00:00:00 second INFO    processed event {FORGED}\r\x1b[2K\u2028{FORGED} too"


@dataclass(frozen=True)
class Hostile:
    name: str
    service: str
    path: str
    headers: dict[str, str] | list[tuple[str, str]] = field(default_factory=dict)
    body: bytes = b""
    statuses: tuple[int, ...] = (200, 202, 204)


def _event(**overrides: str) -> dict[str, str]:
    return cloudevent_headers(traceparent=TRACEPARENT, **overrides)


def _structured(**members: object) -> bytes:
    base = {"specversion": "1.0", "id": secrets.token_hex(6), "source": "tests", "type": "dev.knative.tracing.hello"}
    return json.dumps({**base, **members}).encode()


STRUCTURED = {"content-type": "application/cloudevents+json"}
HUGE_TRACESTATE = ",".join(f"k{i}=v" for i in range(20_000))  # 168 KB: over the head limit
BIG_TRACESTATE = ",".join(f"k{i}=v" for i in range(6_000))  # 48 KB: under it, discarded unread past 32 members
CREDENTIALS = {
    name: f"Bearer {SECRET}"
    for name in ("X-Auth", "X-Forwarded-Authorization", "Authentication", "X-Goog-Iap-Jwt-Assertion", "X-Api-Key")
}

HOSTILE: list[Hostile] = [
    *[
        Hostile(
            f"20,000-member tracestate to {s}",
            s,
            p,
            {"traceparent": TRACEPARENT, "tracestate": HUGE_TRACESTATE},
            statuses=(431,),
        )
        for s, p in (("first", "/"), ("broker", "/default/default"), ("second", "/"), ("second", "/healthz"))
    ],
    Hostile("6,000-member tracestate", "first", "/", {"traceparent": TRACEPARENT, "tracestate": BIG_TRACESTATE}),
    Hostile("101 headers", "first", "/", [(f"x-h{i}", "v") for i in range(101)], statuses=(431,)),
    Hostile("one 70 KB header", "second", "/", {"x-big": "a" * 70_000}, statuses=(431,)),
    Hostile("credentials in headers", "first", "/", {**CREDENTIALS, "baggage": f"user={SECRET}"}),
    Hostile("baggage over 8 KB", "first", "/", {"baggage": f"k={SECRET}," + "x=" + "y" * 9000}),
    Hostile("credential extension", "second", "/", _event(**{"ce-authtoken": SECRET}), b"x", (204,)),
    Hostile("forged line in data to first", "first", "/", {"content-type": "text/plain"}, _FORGERY.encode()),
    Hostile("forged line in data to second", "second", "/", _event(), _FORGERY.encode(), (204,)),
    Hostile("forged line to the dead-letter route", "second", "/dead-letter", _event(), _FORGERY.encode(), (204,)),
    Hostile("forged line via the broker", "broker", "/default/default", _event(), _FORGERY.encode(), (202,)),
    Hostile(
        "forged line in structured attributes",
        "second",
        "/",
        STRUCTURED,
        _structured(source=_FORGERY, comexample=_FORGERY.replace("\n", " ").replace("\r", " ")),
        (204, 400),
    ),
    Hostile(
        "JSON nested 5,000 deep to first", "first", "/", {"content-type": "application/json"}, b"[" * 5000 + b"]" * 5000
    ),
    *[
        Hostile(
            f"charset={charset} to {s}",
            s,
            p,
            STRUCTURED,
            _structured(datacontenttype=f"text/plain; charset={charset}", data="a..b"),
            (202, 204),
        )
        for charset in ("idna", "undefined", "rot13", "nope")
        for s, p in (("second", "/"), ("broker", "/default/default"))
    ],
    Hostile(
        "source that is not a URI", "broker", "/default/default", _event(**{"ce-source": "not a%20uri"}), b"x", (202,)
    ),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
def test_hostile_input_is_answered_without_a_500(stack: Stack, case: Hostile) -> None:
    reply = httpx.post(stack.url(case.service) + case.path, headers=case.headers, content=case.body, timeout=30)
    if case.path == "/healthz":
        reply = httpx.get(stack.url(case.service) + case.path, headers=case.headers, timeout=30)
    assert reply.status_code in case.statuses, reply.text
    if reply.status_code >= 400:
        assert reply.json()["error"]
    # The service is still answering at once.
    assert httpx.get(stack.url(case.service) + "/healthz", timeout=5).status_code == 200


def _logs(stack: Stack) -> str:
    return "".join(stack.services[name].log() for name in ("first", "broker", "second"))


def test_no_log_line_is_forged_and_no_credential_logged(stack: Stack) -> None:
    """Runs after the table (same module): every service's log, whole."""
    marker = f"after-{secrets.token_hex(4)}"
    httpx.post(stack.url("broker") + "/default/default", headers=_event(**{"ce-id": marker}), content=b"x")
    poll_until(lambda: f"processed event {marker}" in stack.services["second"].log(), 10, "second to catch up")
    logs = _logs(stack)
    assert FORGED in logs  # the forgeries were logged, as data...
    for line in logs.splitlines():
        if FORGED in line:  # ...but never as a line of their own
            assert not line.startswith(("00:00:00", FORGED)), line
            assert "\u2028" not in line and "\x1b" not in line and "\r" not in line, line
    assert SECRET not in logs
    for name in CREDENTIALS:
        assert f"\t{name}: ***" in logs
    assert "\tBaggage: ***" in logs
    assert "authtoken: ***" in logs
    assert "accepted leniently, as Knative's broker would" in logs


def test_a_header_arriving_without_end_is_refused_at_the_limit(stack: Stack) -> None:
    """One 50 MB header, streamed: 431 as soon as the limit is passed, not after reading it all."""
    with socket.create_connection(("127.0.0.1", stack.services["second"].port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 50_000_000:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except OSError:
            pass  # the service closed the connection: it stopped reading
        answer = sock.recv(200)
    assert answer.startswith(b"HTTP/1.1 431"), answer
    assert sent < 5_000_000, f"{sent} bytes were read before the refusal"


def test_the_big_tracestate_is_not_forwarded(stack: Stack) -> None:
    reply = httpx.get(
        stack.url("first") + "/", headers={"traceparent": TRACEPARENT, "tracestate": BIG_TRACESTATE}, timeout=10
    )
    assert reply.status_code == 200
    assert reply.json()["trace_id"] == TRACEPARENT.split("-")[1]  # the trace continues; the list is dropped
