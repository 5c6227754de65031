"""One event's journey, however many traces it took: the workshop shows one trace when context propagates,
two when it does not (`make run BROKEN=1`), and links when the event carries its own context.

Spans are matched to the event by `cloudevents.event_id`, which first, the broker and second all record.
"""

from __future__ import annotations

from tools.hops import has_every_hop, is_whole
from tools.otlp_receiver import Receiver
from tools.spans import Span, by_trace
from tools.trace_tree import render

EVENT_ID = "cloudevents.event_id"


def event_traces(spans: list[Span], event_id: str) -> list[list[Span]] | None:
    """The traces `event_id` went through, and those its spans link to, oldest first, once first's send, the
    broker's spans and second's process have all arrived and each trace is whole; None until then."""
    mine = [s for s in spans if s.attributes.get(EVENT_ID) == event_id]
    if not has_every_hop(mine):
        return None
    traces = by_trace(spans)
    wanted = {s.trace_id for s in mine} | {trace_id for s in mine for trace_id, _ in s.links}
    found = [traces.get(trace_id, []) for trace_id in wanted]
    if not all(found) or not all(is_whole(trace) for trace in found):
        return None
    return sorted(found, key=lambda trace: min(s.start_ns for s in trace))


def describe_links(traces: list[list[Span]]) -> list[str]:
    """One line per span link, naming both ends: the tree shows parents, not links."""
    spans = {(s.trace_id, s.span_id): s for trace in traces for s in trace}
    lines = []
    for trace in traces:
        for span in trace:
            for trace_id, span_id in span.links:
                target = spans.get((trace_id, span_id))
                where = "the same trace" if trace_id == span.trace_id else f"trace {trace_id}"
                what = f"{target.service}: {target.name}" if target else f"span {span_id}"
                lines.append(f"link: {span.service}: {span.name}  ->  {what}  (in {where})")
    return lines


def wait_for_event(receiver: Receiver, event_id: str, timeout: float) -> list[list[Span]] | None:
    """Block until `event_traces` has the whole journey of `event_id` (None if `timeout` passes first)."""
    found: list[list[Span]] | None = None

    def ready(spans: list[Span]) -> bool:
        nonlocal found
        found = event_traces(spans, event_id)
        return found is not None

    receiver.wait_for(ready, timeout)
    return found


def show(traces: list[list[Span]], event_id: str) -> str:
    """The trees of an event's traces, one after the other, and its links; a lone trace prints as before."""
    links = describe_links(traces)
    if len(traces) == 1 and not links:
        return render(traces[0])
    holding = sum(1 for trace in traces if any(s.attributes.get(EVENT_ID) == event_id for s in trace))
    linked = len(traces) - holding
    head = f"event {event_id} went through {holding} trace{'s' if holding > 1 else ''}"
    parts = [head + (f", and links to {linked} more:" if linked else ":")]
    parts.extend("\n" + render(trace) for trace in traces)
    if links:
        parts.append("\n" + "\n".join(links))
    return "\n".join(parts)
