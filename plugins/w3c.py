"""W3C Trace Context (level 2) read exactly as the specification says: `traceparent` and `tracestate`.

The upstream gap it fills: opentelemetry-api's `TraceContextTextMapPropagator` (1.45) deviates from the spec
where a tracing demo must not:
- two `traceparent` headers: stock continues the first; the request's context is ambiguous, so a new trace here;
- a future `traceparent` version: stock keeps flags this version does not define; they are dropped here;
- `tracestate` keys of the current grammar (a digit first, `@` anywhere): stock rejects them and with them the
  whole header, so a valid vendor entry is lost downstream.
A malformed header never raises: it contributes no context. Every value is capped before it is parsed, and
parsing is linear (tests/unit/test_parser_cost.py). Injection is the stock code: it writes what the spec asks.

Delete this module (and name the stock `tracecontext` in OTEL_PROPAGATORS) when the
stock propagator passes the W3C cases of tests/unit/test_propagation.py.

Cost is not the reason it exists (docs/bench.md, `--library propagators`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

OWS: Final = " \t"
"""HTTP optional whitespace (RFC 9110 5.6.3) around a field value is not part of it."""

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\s\S]*)?")
_TRACEPARENT_MAX = 512
"""Longer values are refused unread: the spec lets pass-through services refuse prohibitively large headers."""
_KNOWN_FLAGS = TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID
"""The flags level 2 defines; the rest are reserved and go out as zero."""
_TRACESTATE_KEY = re.compile(r"[a-z0-9][a-z0-9_\-*/@]{0,255}")
_TRACESTATE_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_NONEMPTY_MEMBER = re.compile(r"[^, \t][^,]*")
_TRACESTATE_MAX_MEMBERS = 32
_TRACESTATE_MAX_CHARS = _TRACESTATE_MAX_MEMBERS * (256 + 1 + 256 + 4)
"""The longest combined `tracestate` that can hold 32 valid members (key, `=`, value, a comma and some optional
whitespace each): a longer one cannot be valid and is discarded before it is split, so the work per request is
bounded whatever a caller sends."""
_TRACESTATE_KEEP_CHARS = 512
"""What is forwarded: the spec asks for at least 512 characters, and lets a vendor document its limit. Longer
lists are cut by the spec's rule (whole entries, those over 128 characters first, then from the end)."""


@dataclass(frozen=True)
class Traceparent:
    trace_id: int
    span_id: int
    flags: int


def parse_traceparent(value: str) -> Traceparent | None:
    """One `traceparent` value per the spec's parsing rules (future versions included), or None if invalid."""
    value = value.strip(OWS)
    # A comma cannot occur in any field: the value is two headers joined by a proxy or a framework.
    if len(value) > _TRACEPARENT_MAX or "," in value:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    # Version ff is forbidden; version 00 has exactly four fields; a later one may add fields after a dash.
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if int(trace_id, 16) == 0 or int(span_id, 16) == 0:
        return None
    return Traceparent(int(trace_id, 16), int(span_id, 16), int(flags, 16) & _KNOWN_FLAGS)


class _CheckedTraceState(TraceState):
    """A TraceState whose members parse_tracestate already checked against the current grammar: the stock
    constructor checks keys against an older one and would silently drop valid members."""

    def __init__(self, members: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self._dict = dict(members)


def parse_tracestate(values: Sequence[str] | None) -> TraceState:
    """Every `tracestate` field combined (RFC 9110 5.3); an unparsable list is discarded whole, as the spec
    allows, rather than forwarded half-understood."""
    combined = ",".join(values or ())
    if len(combined) > _TRACESTATE_MAX_CHARS:
        return TraceState()
    members: dict[str, str] = {}
    # Empty members are allowed (they appear when fields are combined): the regular expression passes over them,
    # so a list of nothing but commas and spaces costs no more than a full one.
    for raw in _NONEMPTY_MEMBER.findall(combined):
        member = raw.rstrip(OWS)
        key, sep, value = member.partition("=")
        if not sep or not _TRACESTATE_KEY.fullmatch(key) or not _TRACESTATE_VALUE.fullmatch(value):
            return TraceState()
        if key in members or len(members) == _TRACESTATE_MAX_MEMBERS:
            return TraceState()  # a duplicate key, or more than 32 members
        members[key] = value
    return _CheckedTraceState(_truncated(list(members.items())))


def _truncated(members: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """At most _TRACESTATE_KEEP_CHARS of `key=value,...`, cut as the spec says (whole entries: first those
    longer than 128 characters, then from the end)."""

    def size(kept: list[tuple[str, str]]) -> int:
        return sum(len(key) + 1 + len(value) for key, value in kept) + max(len(kept) - 1, 0)

    if size(members) <= _TRACESTATE_KEEP_CHARS:
        return members
    kept = [(key, value) for key, value in members if len(key) + 1 + len(value) <= 128]
    total = size(kept)  # kept up to date as entries go, so cutting is linear
    while total > _TRACESTATE_KEEP_CHARS:
        key, value = kept.pop()
        total -= len(key) + 1 + len(value) + (1 if kept else 0)
    return kept


class W3CTraceContext(TextMapPropagator):
    """`traceparent` and `tracestate`, extracted per W3C Trace Context level 2; injected by the stock code."""

    _inject = TraceContextTextMapPropagator()

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        context = Context() if context is None else context
        values = getter.get(carrier, TRACEPARENT)
        # Two traceparent headers: which one is the caller? Neither can be trusted, so a new trace.
        if not values or len(values) != 1:
            return context
        parent = parse_traceparent(values[0])
        if parent is None:
            return context  # tracestate is not read when traceparent is invalid (the spec says so)
        span_context = SpanContext(
            trace_id=parent.trace_id,
            span_id=parent.span_id,
            is_remote=True,
            trace_flags=TraceFlags(parent.flags),
            trace_state=parse_tracestate(getter.get(carrier, TRACESTATE)),
        )
        return trace.set_span_in_context(NonRecordingSpan(span_context), context)

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        self._inject.inject(carrier, context, setter)

    @property
    def fields(self) -> set[str]:
        return {TRACEPARENT, TRACESTATE}
