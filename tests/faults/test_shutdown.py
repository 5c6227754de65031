"""SIGTERM (Knative scaling a revision down): stop accepting, finish what is in flight, flush the spans, exit
0 or by the signal (143 / -15), within a bounded time; a delivery that cannot finish in time is logged."""

from __future__ import annotations

import secrets
import signal
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
    # DELIVERY_TIMEOUT far above SHUTDOWN_TIMEOUT, so that the deadline is what ends a hanging delivery.
    broker = {**otlp, "BROKER_CONFIG": str(folder / "trigger.yaml"), "DELIVERY_TIMEOUT": "30"}
    specs = {
        "first": ("first", {**otlp, "K_SINK": peer.url + INGRESS, "SHUTDOWN_TIMEOUT": "5"}),
        "broker": ("broker", {**broker, "BROKER_SUBSCRIBERS": f"peer={peer.url}/slow", "SHUTDOWN_TIMEOUT": "5"}),
        "stuck-broker": ("broker", {**broker, "BROKER_SUBSCRIBERS": f"peer={peer.url}/never", "SHUTDOWN_TIMEOUT": "1"}),
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


def test_broker_logs_a_delivery_it_cannot_finish_before_the_deadline(services: dict[str, Service], peer: Peer) -> None:
    broker = services["stuck-broker"]
    event_id, trace_id = _publish(broker)
    poll_until(lambda: peer.at("/never/subscriber"), 5, "the delivery to reach the subscriber")
    started = time.monotonic()
    _terminate(broker, 10)
    assert time.monotonic() - started < 8  # SHUTDOWN_TIMEOUT=1 s, not DELIVERY_TIMEOUT=30 s
    lost = [line for line in broker.log().splitlines() if f"event {event_id}" in line and "LOST" in line]
    assert len(lost) == 1, broker.log()
    assert f"traceid={trace_id}" in lost[0]


def test_ctrl_c_by_hand_stops_cleanly_without_a_traceback(tmp_path: Path) -> None:
    """A workshop attendee runs a service by hand and presses Ctrl-C: a clean stop, status 130, no traceback."""
    with running("second", {"OTEL_TRACES_EXPORTER": "none"}, tmp_path) as second:
        second.process.send_signal(signal.SIGINT)
        code = second.process.wait(15)
        output = second.log()
    assert code == 128 + signal.SIGINT, output
    assert "Traceback" not in output
    assert "Application shutdown complete" in output
