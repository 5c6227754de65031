"""Zipkin B3 read exactly as openzipkin/b3-propagation says, and the sampler for B3's four sampling states.

The upstream gap it fills: opentelemetry-propagator-b3 (1.45) deviates from the spec where a tracing demo
must not:
- B3 ids in upper-case hex and nonsense sampling values (`X-B3-Sampled: yes`): stock accepts them; malformed;
- B3 "defer" (ids, no sampling state): stock decides "deny" (multi) or "accept" (single); the spec leaves the
  decision to this service's own sampler (`B3AwareSampler` below);
- a B3 decision with no ids (`b3: 0`, `X-B3-Sampled: 0`): stock ignores it; it is honoured here;
- a malformed B3 parent span id: stock ignores it; the context is malformed.
Injection keeps 64-bit trace ids 16 digits wide (stock pads them to 32). A malformed header never raises: it
contributes no context. Every value is capped before it is parsed (tests/unit/test_parser_cost.py).

The sampler: an OpenTelemetry span context has one bit for sampling, so B3's four states do not fit: the stock
ParentBased sampler would read "defer" as "deny". `B3AwareSampler` reads the state extracted here and, for
the span that continues it:
- defer: lets the configured sampler decide as it would for a new trace (same trace id);
- deny (`X-B3-Sampled: 0`, `b3: ...-0`, a bare `b3: 0`): records nothing; the unsampled context then goes
  downstream, so the broker and second record nothing either;
- accept and debug: records (debug is an emphasised accept).
A W3C `traceparent` in the same request wins (the composite's order: b3multi_strict before tracecontext_strict in
OTEL_PROPAGATORS), and its sampled flag is left to the configured sampler, since W3C flags are recommendations.
`OTEL_TRACES_SAMPLER=parentbased_b3` chooses it.

Delete this module (and name the stock `b3`/`b3multi` in OTEL_PROPAGATORS) when opentelemetry-propagator-b3 passes
the B3 cases of tests/unit/test_propagation.py and the SDK samples a B3 "defer" as a new trace.

"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context, create_key, get_value, set_value
from opentelemetry.propagators import textmap
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.util.types import Attributes

from plugins.w3c import OWS

B3_SINGLE: Final = "b3"
B3_TRACE_ID: Final = "x-b3-traceid"
B3_SPAN_ID: Final = "x-b3-spanid"
B3_PARENT_SPAN_ID: Final = "x-b3-parentspanid"
B3_SAMPLED: Final = "x-b3-sampled"
B3_FLAGS: Final = "x-b3-flags"
B3_FIELDS: Final = (B3_SINGLE, B3_TRACE_ID, B3_SPAN_ID, B3_PARENT_SPAN_ID, B3_SAMPLED, B3_FLAGS)
"""Every B3 header, single and multi."""
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
    value = value.strip(OWS)
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


def _first(getter: textmap.Getter[textmap.CarrierT], carrier: textmap.CarrierT, name: str) -> str | None:
    values = getter.get(carrier, name)
    # "When extracting state headers, the first value wins" (B3, multiple headers).
    return values[0].strip(OWS) if values else None


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


class B3Multi(textmap.TextMapPropagator):
    """B3: `X-B3-*` headers out. In, both forms: the single `b3` header takes precedence over the `X-B3-*`
    ones; a malformed `b3` is ignored and the `X-B3-*` headers are read instead (as Brave and OpenTelemetry
    Java do)."""

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> Context:
        context = Context() if context is None else context
        single = _first(getter, carrier, B3_SINGLE)
        found = parse_b3_single(single) if single is not None else None
        if found is None:
            found = parse_b3_multi(
                {name: value for name in B3_FIELDS[1:] if (value := _first(getter, carrier, name)) is not None}
            )
        if found is None:
            return context
        span_context = found.span_context()
        context = set_value(_B3_KEY, _Extracted(found, span_context), context)
        if span_context is not None:
            context = trace.set_span_in_context(NonRecordingSpan(span_context), context)
        return context

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter,
    ) -> None:
        parts = _b3_out(context)
        if parts is not None:
            for name, value in self._headers(*parts):
                setter.set(carrier, name, value)

    @staticmethod
    def _headers(trace_id: str, span_id: str, sampled: str) -> list[tuple[str, str]]:
        return [(B3_TRACE_ID, trace_id), (B3_SPAN_ID, span_id), (B3_SAMPLED, sampled)]

    @property
    def fields(self) -> set[str]:
        return {B3_TRACE_ID, B3_SPAN_ID, B3_SAMPLED}


class B3Single(B3Multi):
    """B3: the single `b3` header out; read like B3Multi."""

    @staticmethod
    def _headers(trace_id: str, span_id: str, sampled: str) -> list[tuple[str, str]]:
        return [(B3_SINGLE, f"{trace_id}-{span_id}-{sampled}")]

    @property
    def fields(self) -> set[str]:
        return {B3_SINGLE}


class B3AwareSampler(Sampler):
    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(  # noqa: PLR0917 - the SDK's Sampler signature
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        b3 = b3_decision(parent_context)
        if b3 is None:
            return self._delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        parent = trace.get_current_span(parent_context).get_span_context()
        if b3.sampling is None:
            # Defer: decide as for a trace that starts here, keeping the caller's trace id.
            return self._delegate.should_sample(Context(), trace_id, name, kind, attributes, links)
        if not b3.sampling.sampled:
            return SamplingResult(Decision.DROP, None, parent.trace_state if parent.is_valid else None)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent.trace_state if parent.is_valid else None)

    def get_description(self) -> str:
        return f"B3Aware{{{self._delegate.get_description()}}}"


def parentbased_b3(rate: str | None) -> Sampler:
    """`OTEL_TRACES_SAMPLER=parentbased_b3` (an `opentelemetry_traces_sampler` entry point): the stock
    parent-based sampler, a new trace sampled at OTEL_TRACES_SAMPLER_ARG (default 1), made B3-aware."""
    try:
        ratio = 1.0 if rate is None or not rate.strip() else float(rate)
    except ValueError:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG={rate!r} must be a number from 0 to 1") from None
    return B3AwareSampler(ParentBased(ALWAYS_ON if ratio >= 1 else TraceIdRatioBased(ratio)))
