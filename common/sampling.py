"""The sampler: `OTEL_TRACES_SAMPLER` as configured, plus the B3 sampling states it cannot see.

An OpenTelemetry span context has one bit for sampling, so B3's four states do not fit: the stock
ParentBased sampler would read "defer" (ids without a decision) as "deny". This wrapper reads the B3 state
common.propagation extracted and, for the span that continues it:

- defer: lets the configured sampler decide as it would for a new trace (same trace id);
- deny (`X-B3-Sampled: 0`, `b3: ...-0`, a bare `b3: 0`): records nothing; the unsampled context then goes
  downstream, so the broker and second record nothing either;
- accept and debug: records (debug is an emphasised accept).

A W3C `traceparent` in the same request wins (see common.propagation), and its sampled flag is left to the
configured sampler, since W3C flags are recommendations.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult, _get_from_env_or_default
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

from common.propagation import b3_decision


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


def sampler_from_env() -> Sampler:
    """OTEL_TRACES_SAMPLER(_ARG), read by the SDK's own function (default parentbased_always_on), made B3-aware."""
    return B3AwareSampler(_get_from_env_or_default())
