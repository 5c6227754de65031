"""Trace-context headers at the edges, through the real first -> broker -> second: what is continued, what
starts a new trace, and a B3 "deny" that leaves no span anywhere."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import httpx
import pytest

from tests.support import complete_trace, poll_until
from tools.otlp_receiver import Receiver
from tools.spans import Span
from tools.stack import Stack

SPAN = "00f067aa0ba902b7"


Headers = Sequence[tuple[str, str | bytes]]


def _send(stack: Stack, headers: Headers) -> dict[str, str]:
    raw = [(name.encode(), value if isinstance(value, bytes) else value.encode()) for name, value in headers]
    reply = httpx.get(stack.url("first") + "/", headers=raw, timeout=10)
    assert reply.status_code == 200, reply.text
    body: dict[str, str] = reply.json()
    return body


def _processed(stack: Stack, event_id: str) -> str:
    """The trace id second logged for `event_id`, once it has."""
    line = poll_until(
        lambda: next(
            (x for x in stack.services["second"].log().splitlines() if f"processed event {event_id}" in x), None
        ),
        10,
        f"second to process event {event_id}",
    )
    return line.rsplit("traceid=", 1)[1].strip()


def _roots(spans: list[Span]) -> list[Span] | None:
    """The spans whose parent is not in `spans`, once that is only first's SERVER span."""
    roots = [s for s in spans if s.parent_id not in {x.span_id for x in spans}]
    return roots if [(r.service, r.kind) for r in roots] == [("first", "SERVER")] else None


@pytest.mark.parametrize(
    ("kind", "continued"),
    [
        ("future-version", True),
        ("b3-64-bit", True),
        ("b3-debug", True),
        ("b3-defer-multi", True),
        ("b3-defer-single", True),
        ("two-traceparents", False),
        ("b3-upper-case", False),
        ("b3-bad-sampling", False),
        ("tracestate-junk", True),
        ("bytes-junk", False),
    ],
)
def test_context_is_continued_only_when_valid(
    request: pytest.FixtureRequest, receiver: Receiver, kind: str, continued: bool
) -> None:
    # B3 is read only where it is switched on (B3=1): the B3 cases and the junk in every header go to that stack.
    stack: Stack = request.getfixturevalue("b3_stack" if kind.startswith(("b3", "bytes")) else "stack")
    w3c, other, b3 = secrets.token_hex(16), secrets.token_hex(16), secrets.token_hex(16)
    cases: dict[str, tuple[Headers, str]] = {
        "future-version": ([("traceparent", f"cc-{w3c}-{SPAN}-01-later-fields")], w3c),
        "b3-64-bit": ([("b3", f"{b3[16:]}-{SPAN}-1")], "0" * 16 + b3[16:]),
        "b3-debug": ([("x-b3-traceid", b3), ("x-b3-spanid", SPAN), ("x-b3-flags", "1")], b3),
        # Defer: no sampling state, so first's own sampler decides (parentbased_always_on: record).
        "b3-defer-multi": ([("x-b3-traceid", b3), ("x-b3-spanid", SPAN)], b3),
        "b3-defer-single": ([("b3", f"{b3}-{SPAN}")], b3),
        "two-traceparents": ([("traceparent", f"00-{w3c}-{SPAN}-01"), ("traceparent", f"00-{other}-{SPAN}-01")], w3c),
        "b3-upper-case": ([("b3", f"{b3.upper()}-{SPAN}-1")], b3),
        "b3-bad-sampling": ([("b3", f"{b3}-{SPAN}-x")], b3),
        "tracestate-junk": ([("traceparent", f"00-{w3c}-{SPAN}-01"), ("tracestate", b"\xff=\xfe,,==")], w3c),
        "bytes-junk": (
            [("traceparent", b"\xff\xfe-\x80"), ("tracestate", b"\xff"), ("b3", b"\xc3("), ("x-b3-flags", b"\xff")],
            w3c,
        ),
    }
    headers, expected = cases[kind]
    body = _send(stack, headers)
    if continued:
        assert body["trace_id"] == expected
    else:
        assert body["trace_id"] not in {w3c, other, b3, "0" * 16 + b3[16:]}
    complete_trace(receiver, body["trace_id"])
    # Spans arrive in batches, a parent often after its children: wait for the root.
    roots = poll_until(lambda: _roots(receiver.spans(body["trace_id"])), 10, "first's SERVER span as the only root")
    assert [r.parent_id for r in roots] == ([SPAN] if continued else [None])
    assert _processed(stack, body["event_id"]) == body["trace_id"]


@pytest.mark.parametrize(
    "deny",
    [
        [("x-b3-sampled", "0")],
        [("b3", "0")],
        [("b3", f"{secrets.token_hex(16)}-{SPAN}-0")],
        [("x-b3-traceid", secrets.token_hex(16)), ("x-b3-spanid", SPAN), ("x-b3-sampled", "0")],
    ],
    ids=["x-b3-sampled-0", "bare-b3-0", "b3-ids-0", "x-b3-ids-sampled-0"],
)
def test_b3_deny_records_nothing_in_any_service(
    b3_stack: Stack, receiver: Receiver, deny: list[tuple[str, str]]
) -> None:
    stack = b3_stack
    denied = _send(stack, deny)
    # The event still flows, and second still knows the trace id (for log correlation) ...
    assert _processed(stack, denied["event_id"]) == denied["trace_id"]
    # ... but no service recorded a span of it. A sampled request sent after it has its whole trace at the
    # receiver, and each service exports in order, so the denied one's spans would have arrived by then.
    complete_trace(receiver, _send(stack, [])["trace_id"])
    assert receiver.spans(denied["trace_id"]) == []
