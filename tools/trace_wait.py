"""What a complete demo trace is, for waiting on it: first's PRODUCER, the broker's spans, second's CONSUMER."""

from __future__ import annotations

from tools.spans import Span


def is_complete(spans: list[Span]) -> bool:
    """first's send, the broker's ingress and trigger spans and second's process span have all arrived."""
    names = {(s.service, s.kind, s.name.split(":", 1)[0].split(" ", 1)[0]) for s in spans}
    return {
        ("first", "PRODUCER", "send"),
        ("broker", "INTERNAL", "broker"),
        ("broker", "INTERNAL", "trigger"),
        ("second", "CONSUMER", "process"),
    } <= names
