"""SIGTERM (Knative scaling a revision down): stop accepting, finish what is in flight, flush the spans, exit
0 or by the signal (143 / -15), within a bounded time; a delivery that cannot finish in time is logged."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.launch import running_together
from tests.faults.peers import NEVER, Peer, Script
from tests.support import cloudevent_headers, poll_until, running
from tools.otlp_receiver import Receiver
from tools.stack import Service

INGRESS = "/default/default"
CLEAN_EXITS = (0, -signal.SIGTERM, 128 + signal.SIGTERM)
TRIGGER = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: default}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: to-peer, namespace: default}
spec:
  broker: default
  subscriber: {ref: {kind: Service, name: peer}, uri: /subscriber}
"""


GRACE = "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN"


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    """Answers slowly, as a busy broker ingress or subscriber would, or never."""
    scripts = {INGRESS: Script(202, delay=0.5), "/slow/subscriber": Script(204, delay=0.5)}
    with Peer({**scripts, "/never/subscriber": Script(NEVER)}) as peer:
        yield peer


@pytest.fixture(scope="module")
def services(peer: Peer, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Service]]:
    folder = tmp_path_factory.mktemp("shutdown")
    (folder / "trigger.yaml").write_text(TRIGGER)
    # The default 5 s batch delay: spans reach the receiver in time only through the shutdown flush.
    otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    # DELIVERY_TIMEOUT far above the graceful shutdown's, so that the deadline is what ends a hanging delivery.
    broker = {
        **otlp,
        "BROKER_CONFIG": str(folder / "trigger.yaml"),
        "DELIVERY_TIMEOUT": "30",
        "DEAD_LETTER_FILE": str(folder / "dead-letters.jsonl"),
    }
    specs = {
        "first": ("first", {**otlp, "K_SINK": peer.url + INGRESS, GRACE: "5"}),
        "broker": (
            "broker",
            # Each broker its own store (broker/store.py refuses to share one); one dead-letter file for both.
            {**broker, "BROKER_SUBSCRIBERS": f"peer={peer.url}/slow", GRACE: "5", "BROKER_STORE": str(folder / "a.db")},
        ),
        "stuck-broker": (
            "broker",
            {
                **broker,
                "BROKER_SUBSCRIBERS": f"peer={peer.url}/never",
                GRACE: "1",
                "BROKER_STORE": str(folder / "b.db"),
            },
        ),
        # A client that sends its body slowly keeps a request running past the deadline.
        "second": ("second", {**otlp, GRACE: "2"}),
    }
    with running_together(specs, folder) as services:
        yield services


def _terminate(service: Service, within: float) -> None:
    service.process.send_signal(signal.SIGTERM)
    code = service.process.wait(within)
    assert code in CLEAN_EXITS, f"{service.name} exited with {code}:\n{service.log()}"


def _refuses_connections(service: Service) -> bool:
    try:
        httpx.get(service.url + "/healthz", timeout=0.5)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        pass
    return False


def test_first_finishes_the_request_in_flight_and_flushes_its_spans(
    services: dict[str, Service], peer: Peer, receiver: Receiver
) -> None:
    first = services["first"]
    replies: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: replies.append(httpx.get(first.url + "/", timeout=10)))
    caller.start()
    poll_until(lambda: peer.at(INGRESS), 5, "first's event to reach the broker")
    started = time.monotonic()
    first.process.send_signal(signal.SIGTERM)
    poll_until(lambda: _refuses_connections(first), 5, "first to stop accepting connections")
    caller.join(10)
    assert [r.status_code for r in replies] == [200], [r.text for r in replies]
    _terminate(first, 10)
    assert time.monotonic() - started < 8
    trace_id = replies[0].json()["trace_id"]
    spans = receiver.spans(trace_id)
    assert {(s.kind, s.name.split(" ")[0]) for s in spans} >= {("SERVER", "GET"), ("PRODUCER", "send")}, spans


def _publish(broker: Service) -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    headers = cloudevent_headers(traceparent=f"00-{trace_id}-{secrets.token_hex(8)}-01")
    reply = httpx.post(broker.url + INGRESS, headers=headers, content=b"hello", timeout=5)
    assert reply.status_code == 202, reply.text
    return headers["ce-id"], trace_id


def test_broker_completes_a_delivery_under_way(services: dict[str, Service], peer: Peer, receiver: Receiver) -> None:
    broker = services["broker"]
    event_id, trace_id = _publish(broker)
    poll_until(lambda: peer.at("/slow/subscriber"), 5, "the delivery to reach the subscriber")
    _terminate(broker, 10)
    assert [a.headers["ce-id"] for a in peer.answered if a.path == "/slow/subscriber"] == [event_id]
    assert f"event {event_id} delivered to {peer.url}/slow/subscriber (to-peer), traceid={trace_id}" in broker.log()
    delivery = [s for s in receiver.spans(trace_id) if s.name == "trigger:to-peer.default"]
    assert [s.status for s in delivery] == ["UNSET"], delivery


def test_broker_keeps_a_delivery_it_cannot_finish_before_the_deadline(
    services: dict[str, Service], peer: Peer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    broker = services["stuck-broker"]
    event_id, trace_id = _publish(broker)
    poll_until(lambda: peer.at("/never/subscriber"), 5, "the delivery to reach the subscriber")
    started = time.monotonic()
    _terminate(broker, 10)
    assert time.monotonic() - started < 8  # SHUTDOWN_TIMEOUT=1 s, not DELIVERY_TIMEOUT=30 s
    lines = [line for line in broker.log().splitlines() if f"event {event_id}" in line]
    kept = [line for line in lines if "dead-lettered to file" in line and "still under way at shutdown" in line]
    assert len(kept) == 1, broker.log()
    assert f"traceid={trace_id}" in kept[0]
    assert not [line for line in lines if "LOST" in line]
    assert broker.log_path is not None
    records = (broker.log_path.parent / "dead-letters.jsonl").read_text().splitlines()
    assert [json.loads(r)["event"]["id"] for r in records] == [event_id]


def test_a_slow_client_is_ended_at_the_deadline_without_a_traceback(services: dict[str, Service]) -> None:
    second = services["second"]
    head = "".join(f"{name}: {value}\r\n" for name, value in cloudevent_headers().items())
    with socket.create_connection(("127.0.0.1", second.port), timeout=10) as slow:
        slow.sendall(f"POST / HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 1000\r\n\r\nonly a little".encode())
        time.sleep(0.5)  # the head is complete: the request is in second's hands, reading a body that stalls
        started = time.monotonic()
        _terminate(second, 10)
        took = time.monotonic() - started
        answer = slow.recv(1000)
    assert took < 2 + 5, took  # SHUTDOWN_TIMEOUT=2, then the exit
    log = second.log()
    assert "Traceback" not in log and "CancelledError" not in log, log
    assert (
        "POST / still running at the end of the graceful shutdown (UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN=2s): ended" in log
    )
    assert answer.startswith(b"HTTP/1.1 503"), answer


def test_ctrl_c_by_hand_stops_cleanly_without_a_traceback(tmp_path: Path) -> None:
    """A workshop attendee runs a service by hand and presses Ctrl-C: a clean stop, no traceback, and the status
    uvicorn's own command line ends with after a Ctrl-C it handled (0)."""
    with running("second", {"OTEL_TRACES_EXPORTER": "none"}, tmp_path) as second:
        second.process.send_signal(signal.SIGINT)
        code = second.process.wait(15)
        output = second.log()
    assert code == 0, output
    assert "Traceback" not in output
    assert "Application shutdown complete" in output
