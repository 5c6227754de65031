"""Bad CloudEvents at the real edges (second's `POST /` and the broker ingress), valid exotic ones, and
redeliveries: every rejection is a 4xx whose JSON `error` names the problem; a redelivery is processed once."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import cloudevent_headers, poll_until, running
from tools.stack import ROOT, Service, Stack

EDGES = ["second", "broker"]
STRUCTURED = {"content-type": "application/cloudevents+json"}
DEFAULT_LIMIT = 1024 * 1024


def _edge(stack: Stack, edge: str) -> str:
    return stack.url("second") + "/" if edge == "second" else stack.url("broker") + "/default/default"


def _document(**members: object) -> bytes:
    base = {"specversion": "1.0", "id": secrets.token_hex(8), "source": "tests", "type": "dev.knative.tracing.hello"}
    return json.dumps({**base, **members}).encode()


def _without(name: str) -> dict[str, str]:
    return {key: value for key, value in cloudevent_headers().items() if key != f"ce-{name}"}


# (case, headers, body, status, what the error must say)
REJECTIONS: list[tuple[str, dict[str, str] | list[tuple[str, str]], bytes, int, str]] = [
    *[(f"no {name}", _without(name), b"x", 400, f"{name!r} is missing") for name in ("id", "source", "type")],
    ("no specversion", _without("specversion"), b"x", 400, "'specversion' is missing"),
    ("empty id", cloudevent_headers(**{"ce-id": ""}), b"x", 400, "'id' is empty"),
    ("specversion 0.3", cloudevent_headers(**{"ce-specversion": "0.3"}), b"x", 400, "specversion '0.3'"),
    ("bad time", cloudevent_headers(**{"ce-time": "yesterday"}), b"x", 400, "'time' 'yesterday'"),
    ("overlong UTF-8", cloudevent_headers(**{"ce-subject": "%C0%A0"}), b"x", 400, "'ce-subject' is not valid UTF-8"),
    (
        "repeated attribute",
        [*cloudevent_headers().items(), ("ce-id", "again")],
        b"x",
        400,
        "'ce-id' appears more than once",
    ),
    ("no CloudEvent at all", {"content-type": "text/plain"}, b"hello", 400, "no CloudEvent found"),
    ("structured: not JSON", STRUCTURED, b"{oops", 400, "not valid JSON"),
    ("structured: an array", STRUCTURED, b"[]", 400, "must be a JSON object, got an array"),
    ("structured: no id", STRUCTURED, _document(id=None), 400, "'id' is missing"),
    ("structured: numeric id", STRUCTURED, _document(id=7), 400, "'id' must be a string"),
    ("structured: float extension", STRUCTURED, _document(ext=1.5), 400, "'ext' must be a string, integer or boolean"),
    ("structured: bad base64", STRUCTURED, _document(data_base64="%%%"), 400, "not valid base64"),
    ("avro format", {"content-type": "application/cloudevents+avro"}, b"\x00", 415, "cloudevents+avro"),
    ("batch format", {"content-type": "application/cloudevents-batch+json"}, b"[]", 415, "batched"),
]


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize(
    ("headers", "body", "status", "problem"), [case[1:] for case in REJECTIONS], ids=[case[0] for case in REJECTIONS]
)
def test_bad_event_gets_a_4xx_naming_the_problem(  # noqa: PLR0917 - pytest passes them positionally
    stack: Stack, edge: str, headers: dict[str, str], body: bytes, status: int, problem: str
) -> None:
    reply = httpx.post(_edge(stack, edge), headers=headers, content=body, timeout=10)
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert problem in reply.json()["error"]


@pytest.mark.parametrize("edge", EDGES)
def test_event_over_the_size_limit_gets_413(stack: Stack, edge: str) -> None:
    url = _edge(stack, edge)
    at_limit = httpx.post(url, headers=cloudevent_headers(), content=b"x" * DEFAULT_LIMIT, timeout=10)
    assert at_limit.status_code in (202, 204), at_limit.text
    over = httpx.post(url, headers=cloudevent_headers(), content=b"x" * (DEFAULT_LIMIT + 1), timeout=10)
    assert over.status_code == 413
    assert "over the 1048576-byte limit (MAX_EVENT_BYTES)" in over.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for _ in range(DEFAULT_LIMIT // 65536 + 1):
            yield b"x" * 65536

    streamed = httpx.post(url, headers=cloudevent_headers(), content=chunks(), timeout=10)
    assert streamed.status_code == 413


def test_declared_size_over_the_limit_is_refused_before_the_body_is_sent(stack: Stack) -> None:
    # The body never comes: an answer proves the service did not wait to read (or buffer) it.
    head = "".join(f"{name}: {value}\r\n" for name, value in cloudevent_headers().items())
    request = f"POST / HTTP/1.1\r\nHost: second\r\n{head}Content-Length: 100000000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", stack.services["second"].port), timeout=10) as sock:
        sock.sendall(request.encode())
        answer = ""
        while "}" not in answer:  # the status line and the JSON body may come in separate reads
            chunk = sock.recv(65536).decode()
            if not chunk:
                break
            answer += chunk
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "100000000 bytes" in answer


def _logged(service: Service, pattern: str) -> int:
    return len(re.findall(pattern, service.log()))


def test_exotic_valid_event_goes_through_the_broker_to_second(stack: Stack) -> None:
    event_id = f"exotic-{secrets.token_hex(4)}"
    headers = cloudevent_headers(
        **{
            "ce-id": event_id,
            "ce-source": "urn:example:caf%25C3%25A9",  # the source is a URI: its own escapes, escaped again
            "ce-subject": '"quoted, with spaces" %E2%82%AC',  # an older sender's quoted-string, then %-escapes
            "ce-time": "2016-12-31T23:59:59.123456789+01:00",  # nanoseconds, an offset
            "ce-comexampleextension1": "value",
            "ce-averylongextensionnamebeyondtwenty": "%F0%9F%98%80",
            "content-type": "application/vnd.example.binary",
        }
    )
    reply = httpx.post(_edge(stack, "broker"), headers=headers, content=b"\x00\x01 binary \xff", timeout=10)
    assert reply.status_code == 202, reply.text
    second = stack.services["second"]
    poll_until(lambda: _logged(second, f"processed event {event_id},"), 10, f"second to process {event_id}")
    log = second.log()
    block = log[log.index(f"  id: {event_id}") - 600 : log.index(f"processed event {event_id},")]
    assert "  source: urn:example:caf%C3%A9" in block
    assert "  subject: quoted, with spaces €" in block
    assert "  averylongextensionnamebeyondtwenty: ***" in block  # extensions not known to be safe: masked
    assert "  datacontenttype: application/vnd.example.binary" in block
    assert "(base64) AAEgYmluYXJ5IP8=" in block  # data that is not text is logged as base64, not mangled


@pytest.mark.parametrize("edge", EDGES)
def test_structured_event_with_base64_data_and_typed_extensions_is_accepted(stack: Stack, edge: str) -> None:
    body = _document(
        data_base64=base64.b64encode(b"\x89PNG").decode(),
        datacontenttype="image/png",
        count=2147483647,
        flag=True,
        time="2024-02-29t12:00:00z",
    )
    reply = httpx.post(_edge(stack, edge), headers={"content-type": STRUCTURED["content-type"]}, content=body)
    assert reply.status_code in (202, 204), reply.text


def test_redelivery_through_the_broker_is_processed_once(stack: Stack) -> None:
    event_id = f"again-{secrets.token_hex(4)}"
    for _ in range(2):
        reply = httpx.post(_edge(stack, "broker"), headers=cloudevent_headers(**{"ce-id": event_id}), content=b"x")
        assert reply.status_code == 202
    second = stack.services["second"]
    duplicate = rf"duplicate event {event_id} from tests: processed [0-9.]+s ago, not processed again"
    poll_until(lambda: _logged(second, duplicate), 10, f"second to log {event_id} as a duplicate")
    assert _logged(second, f"processed event {event_id},") == 1


def test_same_id_from_another_source_is_a_different_event(stack: Stack) -> None:
    event_id = f"shared-{secrets.token_hex(4)}"
    for source in ("tests/a", "tests/b"):
        headers = cloudevent_headers(**{"ce-id": event_id, "ce-source": source})
        assert httpx.post(stack.url("second") + "/", headers=headers, content=b"x").status_code == 204
    assert _logged(stack.services["second"], f"processed event {event_id},") == 2
    assert _logged(stack.services["second"], f"duplicate event {event_id} ") == 0


# Valid CloudEvents that the cloudevents SDK, which second reads with, cannot hold: a leap second (Python's
# datetime has none), a null attribute in structured mode (the JSON format's "absent"), data nested 3000 deep
# (the SDK's JSON reader recurses). The broker, strict as Knative's, takes them; second refuses each with a 400
# naming the problem, never a 500, so the broker's delivery ends at once (a 4xx is final) in the dead letters.
SDK_CANNOT_HOLD = {
    "leap second": (cloudevent_headers(**{"ce-time": "2016-12-31T23:59:60Z"}), b"x", "second must be in 0..59"),
    "null subject": (STRUCTURED, _document(subject=None), "subject"),
    # Knative's broker reads JSON nested up to 10,000 deep (Go's encoding/json); the SDK's reader recurses and
    # stops near Python's recursion limit.
    "deep JSON data": (
        STRUCTURED,
        _document()[:-1] + b', "data": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        "decoding a JSON array",
    ),
}


@pytest.mark.parametrize("case", SDK_CANNOT_HOLD)
def test_valid_events_the_sdk_cannot_hold_get_a_400_from_second(stack: Stack, case: str) -> None:
    headers, body, problem = SDK_CANNOT_HOLD[case]
    assert httpx.post(_edge(stack, "broker"), headers=headers, content=body, timeout=10).status_code == 202
    reply = httpx.post(_edge(stack, "second"), headers=headers, content=body, timeout=10)
    assert reply.status_code == 400, reply.text
    assert problem in reply.json()["error"]


def test_dead_letters_are_not_taken_for_duplicates(stack: Stack) -> None:
    # The broker can dead-letter an event second already processed (its answer was lost): log it anyway.
    headers = cloudevent_headers()
    event_id = headers["ce-id"]
    second = stack.url("second")
    assert httpx.post(second + "/", headers=headers, content=b"x").status_code == 204
    assert httpx.post(second + "/dead-letter", headers=headers, content=b"x").status_code == 204
    later = cloudevent_headers()
    assert httpx.post(second + "/dead-letter", headers=later, content=b"x").status_code == 204
    assert httpx.post(second + "/", headers=later, content=b"x").status_code == 204
    log = stack.services["second"].log()
    assert _logged(stack.services["second"], rf"DEAD LETTER: [^\n]*\n(  [^\n]*\n)*  id: {event_id}\n") == 1
    assert f"processed event {later['ce-id']}," in log
    assert f"duplicate event {event_id} " not in log and f"duplicate event {later['ce-id']} " not in log


@pytest.fixture(scope="module")
def small_second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """second alone, with a tiny size limit and a dedupe window of half a second and two events."""
    env = {
        "OTEL_TRACES_EXPORTER": "none",
        "MAX_EVENT_BYTES": "1000",
        "DEDUPE_WINDOW": "0.5",
        "DEDUPE_MAX_EVENTS": "2",
    }
    with running("second", env, tmp_path_factory.mktemp("small-second")) as service:
        yield service


def test_size_limit_is_configurable(small_second: Service) -> None:
    url = small_second.url + "/"
    assert httpx.post(url, headers=cloudevent_headers(), content=b"x" * 1000).status_code == 204
    over = httpx.post(url, headers=cloudevent_headers(), content=b"x" * 1001)
    assert over.status_code == 413
    assert "1000-byte limit" in over.json()["error"]
    structured = httpx.post(url, headers=STRUCTURED, content=_document(data="x" * 1000))
    assert structured.status_code == 413  # the limit is on the whole body, attributes included


def test_dedupe_window_is_bounded_in_count(small_second: Service) -> None:
    url = small_second.url + "/"
    first, *others = (cloudevent_headers() for _ in range(3))
    for headers in (first, *others, first):
        assert httpx.post(url, headers=headers, content=b"x").status_code == 204
    # Two events remembered at most: the third pushed the first out, so its redelivery is processed again.
    assert _logged(small_second, f"processed event {first['ce-id']},") == 2


def test_dedupe_window_is_bounded_in_time(small_second: Service) -> None:
    url = small_second.url + "/"
    headers = cloudevent_headers()
    event_id = headers["ce-id"]
    assert httpx.post(url, headers=headers, content=b"x").status_code == 204
    assert httpx.post(url, headers=headers, content=b"x").status_code == 204
    assert _logged(small_second, f"duplicate event {event_id} ") == 1

    def processed_again() -> bool:
        assert httpx.post(url, headers=headers, content=b"x").status_code == 204
        return _logged(small_second, f"processed event {event_id},") == 2

    poll_until(processed_again, 5, f"{event_id} to be processed again once the 0.5 s window has passed", 0.1)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEDUPE_WINDOW": "ten minutes"}, "DEDUPE_WINDOW='ten minutes' is not a number >= 0.0"),
        ({"DEDUPE_MAX_EVENTS": "0"}, "DEDUPE_MAX_EVENTS='0' is not a whole number >= 1"),
    ],
)
def test_bad_limits_stop_startup_naming_the_setting(env: dict[str, str], message: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "second"],
        check=False,
        cwd=ROOT,
        env={**os.environ, "PORT": "0", "OTEL_TRACES_EXPORTER": "none", **env},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_first_refuses_a_content_type_that_cannot_be_a_datacontenttype(stack: Stack) -> None:
    # first turns the caller's Content-Type into the event's datacontenttype: a 400, not a 500, when it is bad.
    reply = httpx.post(stack.url("first") + "/", headers={"content-type": "not-a-media-type"}, content=b"x")
    assert reply.status_code == 400
    assert "'datacontenttype' 'not-a-media-type' is not a media type" in reply.json()["error"]


_JUNK_HEADERS = st.dictionaries(
    st.sampled_from(["ce-id", "ce-source", "ce-specversion", "ce-type", "ce-time", "ce-x", "content-type", "ce-"]),
    # What an HTTP client lets through: printable ASCII, no surrounding whitespace.
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20).map(str.strip),
    max_size=6,
)


@settings(max_examples=25, deadline=None)
@given(headers=_JUNK_HEADERS, body=st.binary(max_size=64), edge=st.sampled_from(EDGES))
def test_junk_never_gets_a_5xx(stack: Stack, headers: dict[str, str], body: bytes, edge: str) -> None:
    reply = httpx.post(_edge(stack, edge), headers=headers, content=body, timeout=10)
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400:
        assert reply.json()["error"]
