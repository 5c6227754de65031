"""When a local trace has fully arrived, for waiting on it (`make run`, the tests, the workshop).

Spans arrive in batches, and a parent ends (and is exported) after its children, so "first's send, the broker's
spans and second's process are there" is not yet "the trace is whole". The hops are the ones `make verify` and
`make up` check (`tools.verify_trace.LOCAL_HOPS`), declared once.
"""

from __future__ import annotations

from collections.abc import Sequence

from tools.spans import Span
from tools.verify_trace import LOCAL_HOPS, Hop


def has_every_hop(spans: Sequence[Span], hops: Sequence[Hop] = LOCAL_HOPS) -> bool:
    """Some span matches each hop (in whatever traces `spans` come from)."""
    return all(any(hop.matches(span) for span in spans) for hop in hops)


def is_whole(trace: Sequence[Span]) -> bool:
    """One trace with exactly one span whose parent has not arrived, and that span is a SERVER span: the request's
    entry, whose parent, if it has one, is the caller's. Any other orphan means a parent is still on its way."""
    ids = {span.span_id for span in trace}
    orphans = [span for span in trace if span.parent_id not in ids]
    return len(orphans) == 1 and orphans[0].kind == "SERVER"


def is_complete(trace: Sequence[Span]) -> bool:
    """The trace holds every local hop and every span's parent has arrived."""
    return has_every_hop(trace) and is_whole(trace)
