"""A trace as a tree in the terminal: service, span name, kind, duration, and a waterfall bar."""

from __future__ import annotations

from tools.spans import Span

BAR_WIDTH = 30
NAME_WIDTH = 60
"""Longer span names (Knative's trigger paths carry a UUID) are cut, so the bars stay on screen."""


def plural(count: int, noun: str) -> str:
    """`1 span`, `9 spans`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _children(spans: list[Span]) -> tuple[list[Span], dict[str, list[Span]]]:
    ids = {s.span_id for s in spans}
    roots: list[Span] = []
    children: dict[str, list[Span]] = {}
    for span in sorted(spans, key=lambda s: (s.start_ns, s.end_ns)):
        if span.parent_id and span.parent_id in ids:
            children.setdefault(span.parent_id, []).append(span)
        else:
            roots.append(span)
    return roots, children


def _cut(name: str) -> str:
    return name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"


def render(spans: list[Span], *, width: int = BAR_WIDTH) -> str:
    """Every span once, under its parent; a span whose parent is not in the list starts its own root."""
    if not spans:
        return "(no spans)"
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    total = max(end - start, 1)
    roots, children = _children(spans)
    rows: list[tuple[str, Span]] = []

    def walk(span: Span, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        rows.append((prefix + branch, span))
        kids = children.get(span.span_id, [])
        deeper = prefix + ("" if top else ("   " if last else "│  "))
        for i, kid in enumerate(kids):
            walk(kid, deeper, i == len(kids) - 1, False)

    for root in roots:
        walk(root, "", True, True)
    labels = [f"{tree}{span.service}: {_cut(span.name)}" for tree, span in rows]
    label_width = max(len(label) for label in labels)
    trace_ids = sorted({s.trace_id for s in spans})
    lines = [f"trace {', '.join(trace_ids)}  ({plural(len(spans), 'span')}, {total / 1e6:.1f} ms)"]
    for label, (_, span) in zip(labels, rows, strict=True):
        offset = round((span.start_ns - start) / total * width)
        length = max(1, round((span.end_ns - span.start_ns) / total * width))
        bar = " " * offset + "█" * min(length, width - offset or 1)
        flag = " !" if span.status == "ERROR" else ""
        lines.append(f"{label:<{label_width}}  {span.kind:<8} {span.duration_ms:8.2f} ms  |{bar:<{width}}|{flag}")
    return "\n".join(lines)
