"""One request becomes one trace across first -> broker -> second, however the caller brings context."""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.support import complete_trace
from tools.otlp_receiver import Receiver
from tools.spans import Span
from tools.stack import Stack

CALLER_SPAN = "00f067aa0ba902b7"
B3_SPAN = "0020000000000001"


def _fresh_trace() -> str:
    """Each case its own caller trace id: the receiver holds the whole session's spans."""
    return secrets.token_hex(16)


# How the caller brings context -> (headers, the trace id that must be continued; None: a new trace).
def _caller(kind: str) -> tuple[dict[str, str], str | None]:
    w3c, b3 = _fresh_trace(), _fresh_trace()
    return {
        "none": ({}, None),
        "w3c": ({"traceparent": f"00-{w3c}-{CALLER_SPAN}-01"}, w3c),
        "b3-multi": ({"x-b3-traceid": b3, "x-b3-spanid": B3_SPAN, "x-b3-sampled": "1"}, b3),
        "b3-single": ({"b3": f"{b3}-{B3_SPAN}-1"}, b3),
        "malformed-traceparent": ({"traceparent": "00-not-a-trace-01"}, None),
        "w3c-and-b3-disagree": ({"traceparent": f"00-{w3c}-{CALLER_SPAN}-01", "b3": f"{b3}-{B3_SPAN}-1"}, w3c),
    }[kind]


CALLERS = ["none", "w3c", "b3-multi", "b3-single", "malformed-traceparent", "w3c-and-b3-disagree"]


def _one(spans: list[Span], service: str, kind: str, prefix: str) -> Span:
    found = [s for s in spans if s.service == service and s.kind == kind and s.name.startswith(prefix)]
    assert len(found) == 1, f"expected one {kind} span {prefix!r} from {service}, got {found}"
    return found[0]


def _ancestors(span: Span, by_id: dict[str, Span]) -> list[Span]:
    chain = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


@pytest.mark.parametrize("caller", CALLERS)
def test_request_becomes_one_trace(request: pytest.FixtureRequest, receiver: Receiver, caller: str) -> None:
    # W3C only by default; a caller that brings B3 goes to the stack with B3 on (the B3=1 switch).
    stack: Stack = request.getfixturevalue("b3_stack" if "b3" in caller else "stack")
    headers, continued = _caller(caller)
    reply = httpx.get(stack.url("first") + "/", headers=headers, timeout=10)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    trace_id, event_id = body["trace_id"], body["event_id"]
    if continued:
        assert trace_id == continued
    else:
        assert trace_id not in {h.split("-")[1] for h in headers.values() if "-" in h}
    assert reply.headers["traceparent"].split("-")[1] == trace_id

    spans = complete_trace(receiver, trace_id)
    by_id = {s.span_id: s for s in spans}
    producer = _one(spans, "first", "PRODUCER", "send ")
    ingress = _one(spans, "broker", "INTERNAL", "broker:default.default")
    delivery = _one(spans, "broker", "INTERNAL", "trigger:first-to-second.default")
    consumer = _one(spans, "second", "CONSUMER", "process ")

    # The chain: producer <- ... <- ingress <- delivery <- ... <- consumer, each under the one before.
    assert producer in _ancestors(ingress, by_id)
    assert ingress in _ancestors(delivery, by_id)
    assert delivery in _ancestors(consumer, by_id)
    assert by_id[consumer.parent_id or ""].kind == "SERVER"
    assert [s.kind for s in spans if s.parent_id == producer.span_id] == ["CLIENT"]
    for span in (producer, consumer):
        assert span.attributes["cloudevents.event_id"] == event_id
        assert span.attributes["cloudevents.event_type"] == "dev.knative.tracing.hello"
        assert span.attributes["cloudevents.event_source"] == "first"
        assert span.attributes["cloudevents.event_spec_version"] == "1.0"
    roots = [s for s in spans if s.parent_id not in by_id]
    if continued:
        assert [r.parent_id for r in roots] == [CALLER_SPAN if caller.startswith("w3c") else B3_SPAN]
    else:
        assert [r.parent_id for r in roots] == [None]
