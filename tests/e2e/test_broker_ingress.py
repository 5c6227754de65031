"""The broker accepts (202) only what it can deliver to its subscriber, and forwards events as sent: an event it
could never deliver is refused at the ingress with a 4xx naming the reason; a structured event stays structured,
so re-encoding it cannot outgrow second's head limits (the HTTP binding: an intermediary forwards events up to
64 KB). first answers a header the caller chose with a 4xx, never a 5xx."""

from __future__ import annotations

import json
import re
import secrets
import socket

import httpx
import pytest

from tests.support import cloudevent_headers, poll_until
from tools.stack import Stack, service_environment

NON_ASCII_TYPE = 'text/plain; note="café"'.encode()


def _ingress(stack: Stack) -> str:
    return stack.url("broker") + "/default/default"


def _structured(**extensions: object) -> tuple[str, bytes]:
    event_id = secrets.token_hex(8)
    document = {"specversion": "1.0", "id": event_id, "source": "tests", "type": "dev.knative.tracing.hello"}
    return event_id, json.dumps({**document, **extensions, "data": "x"}, ensure_ascii=False).encode()


def test_a_content_type_no_http_header_can_carry_on_is_refused_at_the_ingress(stack: Stack) -> None:
    headers = [*((name.encode(), value.encode()) for name, value in cloudevent_headers().items())]
    headers = [(name, value) for name, value in headers if name != b"content-type"]
    reply = httpx.post(_ingress(stack), headers=[*headers, (b"content-type", NON_ASCII_TYPE)], content=b"x")
    assert reply.status_code == 400, reply.text
    assert "outside ASCII" in reply.json()["error"]


def test_first_answers_a_non_ascii_content_type_with_a_400(stack: Stack) -> None:
    reply = httpx.post(stack.url("first") + "/", headers={b"content-type": NON_ASCII_TYPE}, content=b"x")
    assert reply.status_code == 400, reply.text
    assert "media type" in reply.json()["error"]


def test_a_content_type_as_long_as_first_takes_goes_through_or_gets_a_4xx(stack: Stack) -> None:
    """first passes the caller's Content-Type on: one that fills first's head must still fit the broker's and
    second's heads (first's MAX_HEADER_BYTES is 4 KiB under theirs), never a 5xx."""
    first_limit = int(service_environment("first").get("MAX_HEADER_BYTES", 65536))
    # Just under first's limit: delivered. Filling the others' 64 KiB head (answered 502 when first took 64 KiB).
    for length in (first_limit - 200, 65536 - 150):
        content_type = "text/plain; x=" + "y" * length
        request = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Type: {content_type}\r\n\r\nz"
        with socket.create_connection(("127.0.0.1", stack.services["first"].port), timeout=10) as sock:
            sock.sendall(request.encode())
            status = int(sock.recv(100).split()[1])
        assert status == (200 if length < first_limit else 431), (length, status)
        assert status < 500


def test_a_binary_event_with_more_headers_than_second_takes_is_refused(stack: Stack) -> None:
    # 88 extensions: within the ingress's own 100 fields as sent, over them with what delivery adds.
    extensions = {f"ce-ext{n}": "v" for n in range(88)}
    reply = httpx.post(_ingress(stack), headers={**cloudevent_headers(), **extensions}, content=b"x")
    assert reply.status_code == 400, reply.text
    assert "MAX_HEADERS" in reply.json()["error"]


@pytest.mark.parametrize(
    "extensions",
    [{f"ext{n}": "v" for n in range(95)}, {"note": "é" * 15_000}],
    ids=["95 extensions", "a 30 KB non-ASCII extension"],
)
def test_a_structured_event_is_delivered_as_sent(stack: Stack, extensions: dict[str, str]) -> None:
    event_id, body = _structured(**extensions)
    reply = httpx.post(_ingress(stack), headers={"content-type": "application/cloudevents+json"}, content=body)
    assert reply.status_code == 202, reply.text
    broker = stack.services["broker"]
    outcome = poll_until(
        lambda: re.search(rf"event {event_id} (delivered to|dead-lettered)", broker.log()),
        15,
        f"an outcome for event {event_id}",
    )
    assert outcome.group(1) == "delivered to", broker.log()[-2000:]
    assert f"processed event {event_id}," in stack.services["second"].log()
