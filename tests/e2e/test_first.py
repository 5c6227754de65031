"""first on a real stack: what it logs, what it sends, what it answers."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import complete_trace, poll_until, running
from tools.otlp_receiver import Receiver
from tools.stack import Stack

_NEW_RECORD = re.compile(r"^\d{2}:\d{2}:\d{2} ")


def _second_log_once_processed(stack: Stack, event_id: str) -> str:
    """second's log once it has written its last line about `event_id` (`processed event <id>, ...`), so every
    record about the event is there: the id alone shows up a line earlier, in the `Event received` block."""
    done = f"processed event {event_id},"
    return poll_until(
        lambda: text if done in (text := stack.services["second"].log()) else None, 5, f"second to log {done!r}"
    )


def _log_block(log: str, first_line: str, trace_id: str) -> list[str]:
    """The lines of the multi-line record that starts with `first_line` in the trace `trace_id`."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if trace_id in line and line.endswith(first_line):
            block = []
            for following in lines[i + 1 :]:
                if _NEW_RECORD.match(following):
                    break
                block.append(following)
            return block
    raise AssertionError(f"no {first_line!r} record for trace {trace_id} in:\n{log}")


def test_request_headers_logged_like_the_article_with_secrets_masked(stack: Stack) -> None:
    secret = secrets.token_hex(12)
    headers = {
        "Authorization": f"Bearer {secret}",
        "Cookie": f"session={secret}",
        "X-Api-Key": secret,
        "X-Request-Token": secret,
        "Accept": "text/html",
    }
    reply = httpx.get(stack.url("first") + "/", headers=headers, timeout=5)
    trace_id = reply.json()["trace_id"]
    log = poll_until(
        lambda: text if trace_id in (text := stack.services["first"].log()) else None, 5, "first's log lines"
    )
    assert secret not in log
    request_block = _log_block(log, "Request headers:", trace_id)
    assert "\tAuthorization: ***" in request_block
    assert "\tCookie: ***" in request_block
    assert "\tX-Api-Key: ***" in request_block
    assert "\tX-Request-Token: ***" in request_block
    assert "\tAccept: text/html" in request_block
    response_block = _log_block(log, "Response headers:", trace_id)
    assert f"\tTraceparent: {reply.headers['traceparent']}" in response_block


def test_get_sends_the_articles_greeting(stack: Stack) -> None:
    reply = httpx.get(stack.url("first") + "/", timeout=5)
    body = reply.json()
    expected = f"hello from first, traceid={body['trace_id']}"
    log = _second_log_once_processed(stack, body["event_id"])
    block = _log_block(log, "Event received: Context Attributes,", body["trace_id"])
    assert f"  id: {body['event_id']}" in block
    assert "  type: dev.knative.tracing.hello" in block
    assert "  source: first" in block
    assert "  specversion: 1.0" in block
    assert "  datacontenttype: text/plain" in block
    assert any(line.startswith("  time: ") for line in block)
    assert "Extensions," in block
    assert any(line.startswith("  knativearrivaltime: ") for line in block)
    assert block[-2:] == ["Data,", f"  {expected}"]
    assert f"processed event {body['event_id']}, traceid={body['trace_id']}" in log


@pytest.mark.parametrize(
    ("content_type", "payload", "logged"),
    [
        ("application/json", b'{"greeting": "hi", "n": 1}', '{"greeting":"hi","n":1}'),
        ("text/plain; charset=utf-8", "grüße".encode(), "grüße"),
    ],
)
def test_post_body_becomes_the_event_data(stack: Stack, content_type: str, payload: bytes, logged: str) -> None:
    reply = httpx.post(stack.url("first") + "/", content=payload, headers={"content-type": content_type}, timeout=5)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    log = _second_log_once_processed(stack, body["event_id"])
    block = _log_block(log, "Event received: Context Attributes,", body["trace_id"])
    assert f"  datacontenttype: {content_type}" in block
    assert block[-1].replace(" ", "") == f"  {logged}".replace(" ", "")


def test_health_checks_make_no_spans(stack: Stack, receiver: Receiver) -> None:
    trace_id = secrets.token_hex(16)
    for name in ("first", "broker", "second"):
        reply = httpx.get(
            stack.url(name) + "/healthz", headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        )
        assert reply.status_code == 200
    # A real request after the probes: once its trace has arrived, the probes' spans would have too.
    done = httpx.get(stack.url("first") + "/", timeout=5).json()["trace_id"]
    complete_trace(receiver, done)
    assert receiver.spans(trace_id) == []


def test_structured_mode_is_selectable(receiver: Receiver, tmp_path: Path) -> None:
    """EVENT_MODE=structured: first sends application/cloudevents+json and second still gets the event."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    with running("second", env, tmp_path) as second:
        with running("first", {**env, "EVENT_MODE": "structured", "K_SINK": second.url + "/"}, tmp_path) as first:
            body = httpx.get(first.url + "/", timeout=5).json()
        log = second.log()
    block = _log_block(log, "Event received: Context Attributes,", body["trace_id"])
    assert f"  id: {body['event_id']}" in block
    assert block[-1] == f"  hello from first, traceid={body['trace_id']}"


def _json_records_of_one_event(env: dict[str, str], tmp_path: Path, trace_id: str) -> list[dict[str, Any]]:
    """second's JSON log records after it received one event in trace `trace_id`."""
    env = {"LOG_FORMAT": "json", "OTEL_TRACES_EXPORTER": "none", **env}
    with running("second", env, tmp_path) as second:
        headers = {
            "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
            "ce-specversion": "1.0",
            "ce-id": "json-log-1",
            "ce-source": "tests",
            "ce-type": "t",
        }
        assert httpx.post(second.url + "/", headers=headers, content=b"x", timeout=5).status_code == 204
        log = second.log()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(r["message"].startswith("Event received: Context Attributes,") for r in records), log
    return records


def test_json_logs_carry_trace_and_span_ids(tmp_path: Path) -> None:
    trace_id = secrets.token_hex(16)
    records = _json_records_of_one_event({}, tmp_path, trace_id)
    assert all({"time", "level", "service", "logger", "message"} <= record.keys() for record in records)
    in_trace = [r for r in records if r.get("trace_id") == trace_id]
    assert any(r["message"].startswith("Event received: Context Attributes,") for r in in_trace)
    assert all(len(r["span_id"]) == 16 and r["span_id"] != "0" * 16 for r in in_trace)


def test_log_correlation_off_leaves_the_ids_out(tmp_path: Path) -> None:
    """OTEL_PYTHON_LOG_CORRELATION=false (what `make bench` measures as a layer): same lines, no ids."""
    records = _json_records_of_one_event({"OTEL_PYTHON_LOG_CORRELATION": "false"}, tmp_path, secrets.token_hex(16))
    assert not [r for r in records if "trace_id" in r or "span_id" in r], records


def test_text_log_lines_in_a_span_carry_its_ids(stack: Stack, receiver: Receiver) -> None:
    body = httpx.get(stack.url("first") + "/", timeout=5).json()
    spans = complete_trace(receiver, body["trace_id"])
    span_ids = {s.span_id for s in spans}
    log = stack.services["first"].log() + stack.services["broker"].log() + stack.services["second"].log()
    tagged = [line for line in log.splitlines() if f"trace_id={body['trace_id']}" in line]
    assert len(tagged) >= 4, log
    for line in tagged:
        span_id = line.split("span_id=", 1)[1].split(" ", 1)[0]
        assert span_id in span_ids, f"log line names span {span_id}, which is not in the trace: {line}"


def test_a_post_body_over_the_limit_gets_413(stack: Stack) -> None:
    too_big = b"x" * (1024 * 1024 + 1)
    reply = httpx.post(stack.url("first") + "/", content=too_big, timeout=10)
    assert reply.status_code == 413
    assert "MAX_EVENT_BYTES" in reply.json()["error"]
    assert httpx.get(stack.url("first") + "/healthz").status_code == 200
