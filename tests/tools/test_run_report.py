"""What `make run` prints about traces (tools/run_report.py), on spans as the receiver decodes them."""

from __future__ import annotations

from tools.event_traces import EVENT_ID
from tools.run_report import TraceReport
from tools.spans import Span


def _span(ids: tuple[int, int, int | None], service: str, name: str, kind: str, start: int, **attrs: object) -> Span:
    """`ids`: trace, span and parent span as small numbers; `start` in ms; `error=True` for an ERROR status."""
    trace, span, parent = ids
    status = "ERROR" if attrs.pop("error", False) else "UNSET"
    return Span(
        trace_id=f"{trace:032x}",
        span_id=f"{span:016x}",
        parent_id=f"{parent:016x}" if parent else None,
        name=name,
        kind=kind,
        service=service,
        start_ns=start * 1_000_000,
        end_ns=start * 1_000_000 + 500_000,
        attributes=dict(attrs),
        status=status,
    )


def _journey(trace: int, start: int) -> list[Span]:
    """A whole trace of first -> broker -> second, as `make run` gets it."""
    event = {EVENT_ID: f"event-{trace}"}
    return [
        _span((trace, 1, None), "first", "GET /", "SERVER", start, **{"http.response.status_code": 200}),
        _span((trace, 2, 1), "first", "send dev.knative.tracing.hello", "PRODUCER", start, **event),
        _span((trace, 3, 2), "first", "POST", "CLIENT", start),
        _span((trace, 4, 3), "broker", "POST /{namespace}/{name}", "SERVER", start + 1),
        _span((trace, 5, 4), "broker", "broker:default.default", "INTERNAL", start + 1, **event),
        _span((trace, 6, 5), "broker", "trigger:first-to-second.default", "INTERNAL", start + 1, **event),
        _span((trace, 7, 6), "broker", "POST", "CLIENT", start + 1),
        _span((trace, 8, 7), "second", "POST /", "SERVER", start + 2),
        _span((trace, 9, 8), "second", "process dev.knative.tracing.hello", "CONSUMER", start + 2, **event),
    ]


def _failed(trace: int, start: int) -> list[Span]:
    """first answered 503: the broker was down."""
    return [
        _span((trace, 1, None), "first", "GET /", "SERVER", start, error=True, **{"http.response.status_code": 503}),
        _span((trace, 2, 1), "first", "send dev.knative.tracing.hello", "PRODUCER", start, error=True,
              **{EVENT_ID: f"event-{trace}"}),
        _span((trace, 3, 2), "first", "POST", "CLIENT", start, error=True, **{"error.type": "ConnectError"}),
    ]  # fmt: skip


def test_a_whole_trace_prints_at_once_and_only_once() -> None:
    report = TraceReport(settle=3)
    spans = _journey(1, 100)
    (block,) = report.ready(spans, now=0)
    assert block.ok and block.text.startswith(f"trace {1:032x}  (9 spans,")
    assert report.ready(spans, now=10) == []


def test_a_failed_request_prints_marked_once_it_settles() -> None:
    report = TraceReport(settle=3)
    spans = _failed(1, 100)
    assert report.ready(spans, now=0) == [], "it may still be on its way"
    (block,) = report.ready(spans, now=3)
    assert not block.ok
    head, tree = block.text.split("\n", 1)
    assert head.startswith("FAILED: first answered 503; the event never reached broker or second;")
    assert "first: POST (ConnectError)" in head
    assert tree.startswith(f"trace {1:032x}  (3 spans,") and tree.count(" !") == 3


def test_trees_keep_the_order_requests_were_sent() -> None:
    report = TraceReport(settle=3)
    # Request 1 failed, request 2 went through and arrived first: 2 waits for 1 until 1 has settled.
    spans = _failed(1, 100) + _journey(2, 200)
    assert report.ready(spans, now=0) == []
    blocks = report.ready(spans, now=3)
    assert [b.text.split("trace ")[1][:32] for b in blocks] == [f"{1:032x}", f"{2:032x}"]
    assert [b.ok for b in blocks] == [False, True]


def test_a_lone_span_is_one_span_and_late_spans_print_the_trace_again() -> None:
    report = TraceReport(settle=1)
    refused = [_span((7, 1, None), "second", "POST /", "SERVER", 100, **{"http.response.status_code": 400})]
    assert report.ready(refused, now=0) == []
    (block,) = report.ready(refused, now=1)
    assert block.text.startswith("FAILED: second answered 400\n")
    assert "(1 span," in block.text
    later = [*refused, _span((7, 2, 1), "second", "process", "CONSUMER", 101)]
    assert report.ready(later, now=1.5) == []
    (again,) = report.ready(later, now=2.5)
    assert again.text.startswith(f"1 more span of trace {7:032x} arrived:")
