"""What `make run` prints about the traces it receives: a tree for every trace, in the order the requests were
sent, failed and incomplete ones too, marked.

A trace is printed once the event it carries has made its whole journey (`tools.event_traces`), or, when it
will not (the broker is down, a request was refused), once no span of it has arrived for `settle` seconds. A
trace that started earlier holds back the ones after it until then, so the trees keep the order of the
requests. Spans that arrive after their trace was printed (the broker's last retries) print it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tools.event_traces import EVENT_ID, event_traces, show
from tools.spans import Span, by_trace
from tools.trace_tree import plural, render

SETTLE_S = 3.0
"""Quiet time after which a trace that is not a whole event journey is printed as it is. The services export
every 100 ms under `make run`; the broker's first redelivery comes after about a second."""

HOPS = ("first", "broker", "second")


@dataclass(frozen=True)
class Block:
    text: str
    ok: bool
    """The request was answered and its event reached second (spans in error on the way, such as a redelivery,
    are noted but do not fail it)."""


def _start(trace: list[Span]) -> int:
    return min(span.start_ns for span in trace)


def _problems(traces: list[list[Span]], journey_complete: bool) -> list[str]:
    """What went wrong, in the words of the spans: the answer, the hops never reached, the spans in error."""
    spans = [span for trace in traces for span in trace]
    problems = []
    ids = {span.span_id for span in spans}
    for span in spans:
        code = span.attributes.get("http.response.status_code")
        if span.kind == "SERVER" and span.parent_id not in ids and isinstance(code, int) and code >= 400:
            problems.append(f"{span.service} answered {code}")
    carriers = {span.service for span in spans if EVENT_ID in span.attributes}
    if not journey_complete and carriers:
        # The hops after the first one the event was seen at, that never saw it.
        after = HOPS[min(HOPS.index(hop) for hop in carriers if hop in HOPS) :] if carriers & set(HOPS) else HOPS
        missing = [hop for hop in after if hop not in carriers]
        problems.append(f"the event never reached {' or '.join(missing)}" if missing else "the journey is incomplete")
    errors = [span for span in spans if span.status == "ERROR"]
    if errors:
        named = ", ".join(f"{span.service}: {span.name}{_error_type(span)}" for span in errors)
        problems.append(f"{plural(len(errors), 'span')} in error (marked !): {named}")
    return problems


def _error_type(span: Span) -> str:
    return f" ({span.attributes['error.type']})" if "error.type" in span.attributes else ""


def _block(traces: list[list[Span]], event_id: str | None) -> Block:
    complete = event_id is not None
    body = show(traces, event_id) if event_id is not None else render(traces[0])
    problems = _problems(traces, complete)
    if not problems:
        return Block(body, ok=True)
    failed = not complete or any("answered" in problem for problem in problems)
    head = ("FAILED: " if failed else "note: ") + "; ".join(problems)
    return Block(f"{head}\n{body}", ok=not failed)


class TraceReport:
    """Decides which traces are ready to print; feed it everything the receiver holds, as often as you like."""

    def __init__(self, settle: float = SETTLE_S) -> None:
        self._settle = settle
        self._printed: dict[str, int] = {}
        """Trace id -> how many of its spans had arrived when it was printed."""
        self._grew: dict[str, tuple[int, float]] = {}
        """Trace id -> (span count, when that count was first seen)."""

    def ready(self, spans: list[Span], now: float, *, final: bool = False) -> list[Block]:
        """The blocks to print now, oldest request first. `final`: print whatever is left, ready or not."""
        traces = by_trace(spans)
        for trace_id, trace in traces.items():
            if self._grew.get(trace_id, (0, 0.0))[0] != len(trace):
                self._grew[trace_id] = (len(trace), now)
        blocks: list[Block] = []
        for trace in sorted(traces.values(), key=_start):
            trace_id = trace[0].trace_id
            if self._printed.get(trace_id) == len(trace):
                continue
            quiet = final or now - self._grew[trace_id][1] >= self._settle
            if trace_id in self._printed:
                if quiet:  # late spans: the whole trace again, so it reads on its own
                    late = len(trace) - self._printed[trace_id]
                    block = _block([trace], None)
                    text = f"{plural(late, 'more span')} of trace {trace_id} arrived:\n{block.text}"
                    blocks.append(Block(text, block.ok))
                    self._printed[trace_id] = len(trace)
                continue
            journey, event_id = self._journey(spans, trace)
            if journey is None and not quiet:
                break  # the requests' order: later traces wait for this one, at most `settle` seconds
            group = journey or [trace]
            blocks.append(_block(group, event_id if journey else None))
            for member in group:
                self._printed[member[0].trace_id] = len(traces.get(member[0].trace_id, member))
        return blocks

    @staticmethod
    def _journey(spans: list[Span], trace: Iterable[Span]) -> tuple[list[list[Span]] | None, str | None]:
        """The whole journey of the event this trace carries, once it has arrived."""
        for event_id in sorted({str(span.attributes[EVENT_ID]) for span in trace if EVENT_ID in span.attributes}):
            journey = event_traces(spans, event_id)
            if journey is not None:
                return journey, event_id
        return None, None
