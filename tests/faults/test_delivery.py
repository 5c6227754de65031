"""The broker with a subscriber that is down or refuses: retries with the Trigger's exponential backoff, then
the dead-letter sink, then the dead-letter file; one log line per failed attempt and one final outcome, each
with event and trace id; `LOST` only when even the file cannot be written."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.peers import Peer, Script
from tests.support import cloudevent_headers, poll_until, running
from tools.stack import Service, free_port

INGRESS = "/default/default"
BACKOFF = 0.1
"""backoffDelay of the test Triggers: exponential waits of 0.2, 0.4 and 0.8 s before retries 1-3."""

TRIGGERS = f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: default}}
---
# Subscriber keeps failing with 503: retried, then dead-lettered.
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: flaky, namespace: default}}
spec:
  broker: default
  filter: {{attributes: {{type: test.flaky}}}}
  subscriber: {{ref: {{kind: Service, name: peer}}, uri: /unavailable}}
  delivery:
    retry: 3
    backoffPolicy: exponential
    backoffDelay: PT{BACKOFF}S
    deadLetterSink: {{ref: {{kind: Service, name: peer}}, uri: /dead-letter}}
---
# Subscriber refuses with 400: a final answer, not retried.
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: refused, namespace: default}}
spec:
  broker: default
  filter: {{attributes: {{type: test.refused}}}}
  subscriber: {{ref: {{kind: Service, name: peer}}, uri: /refuse}}
  delivery:
    retry: 3
    backoffDelay: PT{BACKOFF}S
    deadLetterSink: {{ref: {{kind: Service, name: peer}}, uri: /dead-letter}}
---
# Subscriber and dead-letter sink both down: the event goes to the dead-letter file.
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: doomed, namespace: default}}
spec:
  broker: default
  filter: {{attributes: {{type: test.doomed}}}}
  subscriber: {{ref: {{kind: Service, name: down}}}}
  delivery:
    retry: 2
    backoffDelay: PT{BACKOFF}S
    deadLetterSink: {{ref: {{kind: Service, name: down}}, uri: /dead-letter}}
---
# No dead-letter sink at all (Knative would drop the event): the dead-letter file keeps it.
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: sinkless, namespace: default}}
spec:
  broker: default
  filter: {{attributes: {{type: test.sinkless}}}}
  subscriber: {{ref: {{kind: Service, name: down}}}}
"""


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    with Peer({"/unavailable": Script(503), "/refuse": Script(400), "/dead-letter": Script(204)}) as peer:
        yield peer


@pytest.fixture(scope="module")
def broker(peer: Peer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    folder = tmp_path_factory.mktemp("delivery")
    (folder / "triggers.yaml").write_text(TRIGGERS)
    env = {
        "DEAD_LETTER_FILE": str(folder / "dead" / "letters.jsonl"),
        "BROKER_CONFIG": str(folder / "triggers.yaml"),
        "BROKER_SUBSCRIBERS": f"peer={peer.url},down=http://127.0.0.1:{free_port()}",
        "OTEL_TRACES_EXPORTER": "none",
    }
    with running("broker", env, folder) as broker:
        yield broker


def _publish(broker: Service, event_type: str) -> tuple[str, str]:
    """Send one event with a known trace; return (event id, trace id)."""
    trace_id = secrets.token_hex(16)
    headers = cloudevent_headers(**{"ce-type": event_type, "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
    reply = httpx.post(broker.url + INGRESS, headers=headers, content=b"hello", timeout=5)
    assert reply.status_code == 202, reply.text
    return headers["ce-id"], trace_id


def _lines(broker: Service, event_id: str) -> list[str]:
    return [line for line in broker.log().splitlines() if f"event {event_id}" in line]


def _wait_lines(broker: Service, event_id: str, count: int) -> list[str]:
    def enough() -> list[str] | None:
        found = _lines(broker, event_id)
        return found if len(found) >= count else None

    return poll_until(enough, 5, f"{count} log lines about event {event_id}")


def test_retries_with_exponential_backoff_then_dead_letter(peer: Peer, broker: Service) -> None:
    event_id, trace_id = _publish(broker, "test.flaky")
    dead = poll_until(
        lambda: [a for a in peer.at("/dead-letter") if a.headers.get("ce-id") == event_id], 10, "the dead letter"
    )
    attempts = [a for a in peer.at("/unavailable") if a.headers.get("ce-id") == event_id]
    assert len(attempts) == 4  # the first try and retry: 3
    gaps = [later.at - earlier.at for earlier, later in pairwise(attempts)]
    for retry, gap in enumerate(gaps, start=1):
        assert BACKOFF * 2**retry <= gap < BACKOFF * 2**retry + 1.0, gaps
    # The dead letter is the same event, still in the same trace.
    assert dead[0].body == b"hello"
    assert dead[0].headers["traceparent"].split("-")[1] == trace_id

    lines = _wait_lines(broker, event_id, 5)
    failed = [line for line in lines if "delivery attempt" in line]
    assert [re.findall(r"attempt (\d/\d)", line) for line in failed] == [["1/4"], ["2/4"], ["3/4"], ["4/4"]]
    assert all("answered 503" in line for line in failed)
    outcome = [line for line in lines if "dead-lettered" in line]
    assert len(outcome) == 1
    assert all(trace_id in line for line in failed + outcome)


def test_refusal_is_not_retried(peer: Peer, broker: Service) -> None:
    event_id, trace_id = _publish(broker, "test.refused")
    poll_until(lambda: [a for a in peer.at("/dead-letter") if a.headers.get("ce-id") == event_id], 5, "dead letter")
    assert len([a for a in peer.at("/refuse") if a.headers.get("ce-id") == event_id]) == 1
    lines = _wait_lines(broker, event_id, 2)
    assert "attempt 1/4" in lines[0]
    assert "answered 400" in lines[0]
    assert "dead-lettered" in lines[1]
    assert trace_id in lines[0]
    assert trace_id in lines[1]


def _kept(broker: Service) -> dict[str, dict[str, Any]]:
    """The dead-letter file's records by event id."""
    text = _dead_letter_file(broker).read_text() if _dead_letter_file(broker).exists() else ""
    records = [json.loads(line) for line in text.splitlines()]
    return {record["event"]["id"]: record for record in records}


def _dead_letter_file(broker: Service) -> Path:
    assert broker.log_path is not None
    return broker.log_path.parent / "dead" / "letters.jsonl"


@pytest.mark.parametrize(("event_type", "reason"), [("test.doomed", "failed too"), ("test.sinkless", "not delivered")])
def test_an_event_that_cannot_be_delivered_anywhere_is_kept_in_the_dead_letter_file(
    broker: Service, event_type: str, reason: str
) -> None:
    event_id, trace_id = _publish(broker, event_type)
    kept = poll_until(
        lambda: [line for line in _lines(broker, event_id) if "dead-lettered to file" in line], 10, "the outcome line"
    )
    assert len(kept) == 1
    assert str(_dead_letter_file(broker)) in kept[0] and trace_id in kept[0] and reason in kept[0]
    record = _kept(broker)[event_id]
    assert reason in record["reason"] and record["trace_id"] == trace_id
    assert record["event"]["type"] == event_type and record["event"]["data"] == "hello"  # text/plain data as sent
    failed = [line for line in _lines(broker, event_id) if "delivery attempt" in line]
    assert all(trace_id in line and "ConnectError" in line for line in failed)
    assert not [line for line in _lines(broker, event_id) if "LOST" in line]


def test_lost_only_when_even_the_dead_letter_file_cannot_be_written(broker: Service) -> None:
    path = _dead_letter_file(broker)
    saved = path.read_bytes() if path.exists() else b""
    path.unlink(missing_ok=True)
    path.mkdir()  # a folder where the file was: appending fails
    try:
        event_id, trace_id = _publish(broker, "test.doomed")
        lost = poll_until(lambda: [line for line in _lines(broker, event_id) if "LOST" in line], 10, "the LOST line")
    finally:
        path.rmdir()
        path.write_bytes(saved)
    assert len(lost) == 1
    assert trace_id in lost[0] and "could not be written" in lost[0]
