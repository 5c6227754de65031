"""Which trace-context headers the services read and write, read exactly as the specifications say.

Default `OTEL_PROPAGATORS=b3multi,tracecontext,baggage`: every outgoing request carries both Zipkin B3 (what
Knative <= 1.18 and older workloads speak) and W3C `traceparent` (what Knative >= 1.19 speaks). On the way in,
a composite propagator lets the last one that finds a context win, so tracecontext comes after b3: when a
caller sends both and they disagree, W3C wins.

Extraction is done here rather than by the stock OpenTelemetry propagators, which deviate from the specs
(W3C Trace Context level 2, openzipkin/b3-propagation) in ways a tracing demo must not teach:

- two `traceparent` headers: stock continues the first; the request's context is ambiguous, so a new trace;
- a future `traceparent` version: stock keeps flags this version does not define; they are dropped here;
- `tracestate` keys of the current grammar (a digit first, `@` anywhere): stock rejects them and with them the
  whole header, so a valid vendor entry is lost downstream;
- B3 ids in upper-case hex and nonsense sampling values (`X-B3-Sampled: yes`): stock accepts them; malformed;
- B3 "defer" (ids, no sampling state): stock decides "deny" (multi) or "accept" (single); the spec leaves the
  decision to this service's own sampler (see common.sampling);
- a B3 decision with no ids (`b3: 0`, `X-B3-Sampled: 0`): stock ignores it; it is honoured here;
- a malformed B3 parent span id: stock ignores it; the context is malformed.

A malformed header never raises: it contributes no context, and the service starts a new trace. Injection
keeps the stock W3C code (it writes what the spec asks); B3 injection keeps 64-bit trace ids 16 digits wide.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context, create_key, get_value, set_value
from opentelemetry.propagators.composite import CompositePropagator
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
from starlette.datastructures import Headers

from common.settings import env_str, fail_startup

DEFAULT_PROPAGATORS = "b3multi,tracecontext,baggage"

# HTTP optional whitespace (RFC 9110 5.6.3) around a field value is not part of it.
_OWS = " \t"

# --- W3C Trace Context -----------------------------------------------------------------------------------------

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\s\S]*)?")
_TRACEPARENT_MAX = 512
"""Longer values are refused unread: the spec lets pass-through services refuse prohibitively large headers."""
_KNOWN_FLAGS = TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID
"""The flags level 2 defines; the rest are reserved and go out as zero."""
_TRACESTATE_KEY = re.compile(r"[a-z0-9][a-z0-9_\-*/@]{0,255}")
_TRACESTATE_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
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
    value = value.strip(_OWS)
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
    for raw in combined.split(","):
        member = raw.strip(_OWS)
        if not member:
            continue  # empty members are allowed (they appear when fields are combined)
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
    while size(kept) > _TRACESTATE_KEEP_CHARS:
        kept.pop()
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


# --- B3 --------------------------------------------------------------------------------------------------------

B3_SINGLE: Final = "b3"
B3_TRACE_ID: Final = "x-b3-traceid"
B3_SPAN_ID: Final = "x-b3-spanid"
B3_PARENT_SPAN_ID: Final = "x-b3-parentspanid"
B3_SAMPLED: Final = "x-b3-sampled"
B3_FLAGS: Final = "x-b3-flags"
_B3_SINGLE_MAX = 32 + 1 + 16 + 1 + 1 + 1 + 16
"""The longest valid `b3` value ({128-bit trace id}-{span id}-{state}-{parent}): longer is malformed, unread."""
_B3_FIELD_MAX = 32
"""No `X-B3-*` value is longer (a 128-bit trace id); a longer one is malformed, unread."""
_TRACE_ID_64 = re.compile(r"[0-9a-f]{16}")
_TRACE_ID_128 = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = _TRACE_ID_64


class Sampling(Enum):
    """A B3 sampling state; "defer" (no state sent) is None where a Sampling is optional."""

    DENY = "deny"
    ACCEPT = "accept"
    DEBUG = "debug"

    @property
    def sampled(self) -> bool:
        return self is not Sampling.DENY


_SINGLE_SAMPLING = {"0": Sampling.DENY, "1": Sampling.ACCEPT, "d": Sampling.DEBUG}
# `true`/`false` predate the spec, which lets a lenient reader accept them.
_MULTI_SAMPLING = {"0": Sampling.DENY, "1": Sampling.ACCEPT, "false": Sampling.DENY, "true": Sampling.ACCEPT}


@dataclass(frozen=True)
class B3:
    """What a request's B3 headers say: ids (both or neither) and a sampling state (None: defer)."""

    trace_id: int | None
    span_id: int | None
    sampling: Sampling | None

    def span_context(self) -> SpanContext | None:
        if self.trace_id is None or self.span_id is None:
            return None
        flags = TraceFlags.SAMPLED if self.sampling is not None and self.sampling.sampled else TraceFlags.DEFAULT
        return SpanContext(self.trace_id, self.span_id, is_remote=True, trace_flags=TraceFlags(flags))


def _trace_id(text: str) -> int | None:
    """A 64-bit (16 digits) or 128-bit (32 digits) lower-hex trace id, not zero."""
    if not (_TRACE_ID_64.fullmatch(text) or _TRACE_ID_128.fullmatch(text)):
        return None
    return int(text, 16) or None


def _span_id(text: str) -> int | None:
    return (int(text, 16) or None) if _SPAN_ID.fullmatch(text) else None


def parse_b3_single(value: str) -> B3 | None:
    """`b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]` or a bare sampling state; None if malformed."""
    value = value.strip(_OWS)
    # Too long to be valid: not split at all (no fields), so malformed.
    fields = value.split("-", 4) if len(value) <= _B3_SINGLE_MAX else []
    if len(fields) == 1:
        sampling = _SINGLE_SAMPLING.get(fields[0])
        return None if sampling is None else B3(None, None, sampling)
    if not 2 <= len(fields) <= 4:
        return None
    trace_id, span_id = _trace_id(fields[0]), _span_id(fields[1])
    if trace_id is None or span_id is None:
        return None
    sampling = None
    if len(fields) >= 3:
        sampling = _SINGLE_SAMPLING.get(fields[2])
        if sampling is None:
            return None
    if len(fields) == 4 and _span_id(fields[3]) is None:
        return None
    return B3(trace_id, span_id, sampling)


def parse_b3_multi(headers: dict[str, str]) -> B3 | None:  # noqa: PLR0911 - one return per malformation
    """The `X-B3-*` headers (lower-case names -> first value); None if absent or malformed."""
    if any(len(value) > _B3_FIELD_MAX for value in headers.values()):
        return None
    trace_text, span_text = headers.get(B3_TRACE_ID), headers.get(B3_SPAN_ID)
    parent_text, sampled = headers.get(B3_PARENT_SPAN_ID), headers.get(B3_SAMPLED)
    sampling: Sampling | None = None
    if headers.get(B3_FLAGS) == "1":
        sampling = Sampling.DEBUG  # debug implies accept, whatever X-B3-Sampled says
    elif sampled is not None:
        sampling = _MULTI_SAMPLING.get(sampled.lower())
        if sampling is None:
            return None
    if trace_text is None and span_text is None:
        if parent_text is not None or sampling is None:
            return None
        return B3(None, None, sampling)
    trace_id, span_id = _trace_id(trace_text or ""), _span_id(span_text or "")
    if trace_id is None or span_id is None:
        return None
    if parent_text is not None and _span_id(parent_text) is None:
        return None
    return B3(trace_id, span_id, sampling)


_B3_KEY = create_key("b3-sampling")


@dataclass(frozen=True)
class _Extracted:
    b3: B3
    span_context: SpanContext | None
    """The very object put in the context, so a W3C context that replaced it is told apart, same ids or not."""


def b3_from_context(context: Context | None) -> B3 | None:
    """The B3 state extracted into `context`, whether or not a W3C context took over."""
    found = get_value(_B3_KEY, context)
    return found.b3 if isinstance(found, _Extracted) else None


def b3_decision(context: Context | None) -> B3 | None:
    """The B3 state that governs a span started in `context`: the one whose ids are that span's remote parent
    (a W3C context that took over is not), or a state sent without ids when no other context came with it."""
    found = get_value(_B3_KEY, context)
    if not isinstance(found, _Extracted):
        return None
    parent = trace.get_current_span(context).get_span_context()
    if found.span_context is None:
        return None if parent.is_valid else found.b3
    return found.b3 if parent is found.span_context else None


def _first(getter: Getter[CarrierT], carrier: CarrierT, name: str) -> str | None:
    values = getter.get(carrier, name)
    # "When extracting state headers, the first value wins" (B3, multiple headers).
    return values[0].strip(_OWS) if values else None


def _b3_trace_id(trace_id: int) -> str:
    # A 64-bit id stays 16 digits wide, as it arrived and as B3 tracers (Brave, Zipkin) send it.
    return format(trace_id, "016x") if trace_id < 2**64 else format(trace_id, "032x")


def _b3_out(context: Context | None) -> tuple[str, str, str] | None:
    """Trace id, span id and sampling state of the current span as B3 writes them; None outside a trace."""
    span_context = trace.get_current_span(context).get_span_context()
    if not span_context.is_valid:
        return None
    sampled = "1" if span_context.trace_flags.sampled else "0"
    return _b3_trace_id(span_context.trace_id), format(span_context.span_id, "016x"), sampled


class B3Multi(TextMapPropagator):
    """B3: `X-B3-*` headers out. In, both forms: the single `b3` header takes precedence over the `X-B3-*`
    ones; a malformed `b3` is ignored and the `X-B3-*` headers are read instead (as Brave and OpenTelemetry
    Java do)."""

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        context = Context() if context is None else context
        single = _first(getter, carrier, B3_SINGLE)
        found = parse_b3_single(single) if single is not None else None
        if found is None:
            names = (B3_TRACE_ID, B3_SPAN_ID, B3_PARENT_SPAN_ID, B3_SAMPLED, B3_FLAGS)
            found = parse_b3_multi(
                {name: value for name in names if (value := _first(getter, carrier, name)) is not None}
            )
        if found is None:
            return context
        span_context = found.span_context()
        context = set_value(_B3_KEY, _Extracted(found, span_context), context)
        if span_context is not None:
            context = trace.set_span_in_context(NonRecordingSpan(span_context), context)
        return context

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        parts = _b3_out(context)
        if parts is not None:
            trace_id, span_id, sampled = parts
            setter.set(carrier, B3_TRACE_ID, trace_id)
            setter.set(carrier, B3_SPAN_ID, span_id)
            setter.set(carrier, B3_SAMPLED, sampled)

    @property
    def fields(self) -> set[str]:
        return {B3_TRACE_ID, B3_SPAN_ID, B3_SAMPLED}


class B3Single(B3Multi):
    """B3: the single `b3` header out; read like B3Multi."""

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        parts = _b3_out(context)
        if parts is not None:
            setter.set(carrier, B3_SINGLE, "-".join(parts))

    @property
    def fields(self) -> set[str]:
        return {B3_SINGLE}


class HeadersGetter(Getter[Headers]):
    """Reads Starlette's `request.headers` with every value of a repeated header: the default getter sees only
    the first, so two `traceparent` headers would pass for one. (common.server_spans reads the raw ASGI header
    list itself.)"""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        return carrier.getlist(key) or None

    def keys(self, carrier: Headers) -> list[str]:
        return list(carrier.keys())


HEADERS_GETTER: Final = HeadersGetter()


# --- OTEL_PROPAGATORS ------------------------------------------------------------------------------------------

_KNOWN: dict[str, type[TextMapPropagator]] = {
    "tracecontext": W3CTraceContext,
    "baggage": W3CBaggagePropagator,
    "b3": B3Single,
    "b3multi": B3Multi,
}


def propagator_names() -> list[str]:
    """The names in OTEL_PROPAGATORS, checked. Call before OpenTelemetry's `propagate` module is imported:
    it reads the same variable at import time and dies with a traceback on a name it does not know."""
    names = [name.strip() for name in env_str("OTEL_PROPAGATORS", DEFAULT_PROPAGATORS).split(",") if name.strip()]
    unknown = [name for name in names if name not in _KNOWN and name != "none"]
    if unknown:
        fail_startup(f"OTEL_PROPAGATORS names unknown propagator(s) {unknown}; known: {', '.join(_KNOWN)}, none")
    return [name for name in names if name != "none"]


def propagator_from_env() -> TextMapPropagator:
    return CompositePropagator([_KNOWN[name]() for name in propagator_names()])
