"""The CloudEvents Distributed Tracing extension: first writes the PRODUCER span's context into the event;
second parents its CONSUMER span on it when the transport brought none, and links to it when both differ."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

from tests.faults.peers import Peer
from tests.support import poll_until
from tools.event_traces import wait_for_event
from tools.otlp_receiver import Receiver
from tools.spans import Span
from tools.stack import Service, Stack

EVENT_TYPE = "dev.knative.tracing.hello"


def _one(spans: list[Span], service: str, kind: str) -> Span:
    found = [s for s in spans if s.service == service and s.kind == kind]
    assert len(found) == 1, f"expected one {kind} span from {service}, got {found}"
    return found[0]


def _producer(receiver: Receiver, trace_id: str) -> Span:
    spans = receiver.wait_for(
        lambda spans: any(s.trace_id == trace_id and s.kind == "PRODUCER" for s in spans), timeout=10
    )
    return _one([s for s in spans if s.trace_id == trace_id], "first", "PRODUCER")


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_first_writes_the_producer_context_into_the_event(
    lone: dict[str, Service], sink: Peer, receiver: Receiver, mode: str
) -> None:
    reply = httpx.get(lone[mode].url + "/", timeout=10)
    assert reply.status_code == 200, reply.text
    arrived = sink.at(f"/{mode}")[-1]
    if mode == "binary":
        attribute = arrived.headers["ce-traceparent"]
    else:
        assert arrived.headers["content-type"].startswith("application/cloudevents+json")
        attribute = json.loads(arrived.body)["traceparent"]
    producer = _producer(receiver, reply.json()["trace_id"])
    assert attribute.split("-")[1:3] == [producer.trace_id, producer.span_id], "the extension names the PRODUCER"
    # The HTTP header is the next hop's parent (first's CLIENT span), which the extension is not.
    assert arrived.headers["traceparent"].split("-")[1] == producer.trace_id
    assert arrived.headers["traceparent"].split("-")[2] != producer.span_id


def test_extension_carries_the_trace_over_a_hop_that_drops_headers(
    lone: dict[str, Service], receiver: Receiver
) -> None:
    """hop-first -> hop-broker -> untraced hop -> second."""
    reply = httpx.get(lone["hop-first"].url + "/", timeout=10)
    assert reply.status_code == 200, reply.text
    trace_id, event_id = reply.json()["trace_id"], reply.json()["event_id"]

    traces = wait_for_event(receiver, event_id, 10)
    assert traces is not None, f"event {event_id} never reached second: {receiver.spans()}"
    # The event's journey is one trace; second's HTTP SERVER span, whose request came without headers, is a
    # trace of its own that the CONSUMER span links to.
    journey, server_trace = traces
    assert {s.trace_id for s in journey} == {trace_id}
    producer = _one(journey, "first", "PRODUCER")
    consumer = _one(journey, "second", "CONSUMER")
    assert consumer.parent_id == producer.span_id, "the CONSUMER continues the context the event carries"
    server = _one(server_trace, "second", "SERVER")
    assert server.parent_id is None, "the hop should have dropped the trace headers"
    assert consumer.links == ((server.trace_id, server.span_id),)
    poll_until(lambda: "dropped traceparent" in lone["hop"].log(), 5, "the hop to log the headers it dropped")


def test_without_the_extension_the_hop_breaks_the_trace(lone: dict[str, Service], receiver: Receiver) -> None:
    """The control: the same hop and an event without the extension, posted to the hop's broker by the test."""
    trace_id = secrets.token_hex(16)
    event_id = f"workshop-{secrets.token_hex(4)}"
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "tests/workshop",
        "ce-type": EVENT_TYPE,
        "content-type": "text/plain",
        "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
    }
    reply = httpx.post(lone["hop-broker"].url + "/default/default", headers=headers, content=b"hi", timeout=10)
    assert reply.status_code == 202, reply.text
    spans = receiver.wait_for(
        lambda spans: any(s.attributes.get("cloudevents.event_id") == event_id and s.kind == "CONSUMER" for s in spans),
        timeout=10,
    )
    consumer = _one([s for s in spans if s.attributes.get("cloudevents.event_id") == event_id], "second", "CONSUMER")
    assert consumer.trace_id != trace_id
    assert consumer.links == ()


def _post_to_second(stack: Stack, headers: dict[str, str]) -> str:
    event_id = f"workshop-{secrets.token_hex(4)}"
    ce = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "tests/workshop", "ce-type": EVENT_TYPE}
    reply = httpx.post(stack.url("second") + "/", headers={**ce, **headers}, content=b"", timeout=10)
    assert reply.status_code == 204, reply.text
    return event_id


def _consumer_and_server(receiver: Receiver, event_id: str) -> tuple[Span, Span]:
    """second's CONSUMER span for `event_id` and its SERVER span (the parent, or linked), once both arrived."""

    def pair() -> tuple[Span, list[Span]] | None:
        spans = receiver.spans()
        consumers = [s for s in spans if s.attributes.get("cloudevents.event_id") == event_id]
        if not consumers:
            return None
        near = {consumers[0].parent_id, *(span_id for _, span_id in consumers[0].links)}
        servers = [s for s in spans if s.service == "second" and s.kind == "SERVER" and s.span_id in near]
        return (consumers[0], servers) if servers else None

    consumer, servers = poll_until(pair, 10, f"second's CONSUMER and SERVER spans of event {event_id}")
    assert consumer.kind == "CONSUMER"
    assert len(servers) == 1, f"expected one SERVER span next to {consumer}, got {servers}"
    return consumer, servers[0]


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def test_consumer_links_to_the_creation_context_when_the_transport_differs(stack: Stack, receiver: Receiver) -> None:
    transport, transport_trace, _ = _traceparent()
    created, created_trace, created_span = _traceparent()
    event_id = _post_to_second(stack, {"traceparent": transport, "ce-traceparent": created})
    consumer, server = _consumer_and_server(receiver, event_id)
    assert consumer.parent_id == server.span_id, "by default the CONSUMER stays under the HTTP SERVER span"
    assert consumer.trace_id == transport_trace
    assert consumer.links == ((created_trace, created_span),)


def test_no_link_when_the_event_carries_the_transport_context(stack: Stack, receiver: Receiver) -> None:
    same, trace_id, _ = _traceparent()
    event_id = _post_to_second(stack, {"traceparent": same, "ce-traceparent": same})
    consumer, _ = _consumer_and_server(receiver, event_id)
    assert consumer.trace_id == trace_id
    assert consumer.links == ()


def test_a_malformed_extension_is_ignored_and_said_so(stack: Stack, receiver: Receiver) -> None:
    transport, trace_id, _ = _traceparent()
    event_id = _post_to_second(stack, {"traceparent": transport, "ce-traceparent": "00-not-a-context-01"})
    consumer, server = _consumer_and_server(receiver, event_id)
    assert (consumer.trace_id, consumer.parent_id, consumer.links) == (trace_id, server.span_id, ())
    poll_until(
        lambda: f"event {event_id}: extension traceparent" in stack.services["second"].log(),
        5,
        "second to log that it ignored the malformed traceparent extension",
    )
