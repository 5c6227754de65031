"""plugins/exporter.py's hand-made encoder writes what the stock OTLP encoder writes: over generated spans (every
attribute kind, events, links, remote and local parents, trace state, statuses, several resources and scopes),
both outputs are decoded with the stock protobuf classes and compared, and their bytes too."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from plugins.exporter import encode_request

EXAMPLES = settings(max_examples=300, deadline=None)

text = st.text(max_size=12)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    text,
    st.text(min_size=129, max_size=140),  # past the length whose encoding is cached
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=8),
)
homogeneous = st.one_of(
    st.lists(st.booleans(), max_size=3),
    st.lists(text, max_size=3),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3),
    st.lists(st.floats(allow_nan=False), max_size=3),
).map(tuple)
key = st.text(string.ascii_lowercase + "._", min_size=1, max_size=10)
attributes: st.SearchStrategy[dict[str, Any]] = st.dictionaries(key, scalar | homogeneous)
ids = st.integers(1, 2**64 - 1)
trace_state = st.lists(
    st.tuples(st.text(string.ascii_lowercase, min_size=1, max_size=5), st.text(string.ascii_letters, min_size=1)),
    max_size=3,
    unique_by=lambda pair: pair[0],
).map(TraceState)


@st.composite
def contexts(draw: st.DrawFn) -> SpanContext:
    return SpanContext(
        trace_id=draw(st.integers(1, 2**128 - 1)),
        span_id=draw(ids),
        is_remote=draw(st.booleans()),
        trace_flags=TraceFlags(draw(st.sampled_from([0, 1]))),
        trace_state=draw(trace_state),
    )


resources = st.sampled_from(
    [Resource.create({"service.name": "first"}), Resource({"service.name": "broker"}, "https://schema/1")]
)
scopes = st.sampled_from(
    [None, InstrumentationScope("first"), InstrumentationScope("x", "1.0", "https://schema/2", {"a": 1})]
)
statuses = st.sampled_from(
    [Status(), Status(StatusCode.OK), Status(StatusCode.ERROR), Status(StatusCode.ERROR, "broker down")]
)


@st.composite
def spans(draw: st.DrawFn) -> ReadableSpan:
    start = draw(st.integers(0, 2**63))
    return ReadableSpan(
        name=draw(text),
        context=draw(contexts()),
        parent=draw(st.none() | contexts()),
        resource=draw(resources),
        attributes=draw(attributes),
        events=draw(
            st.lists(st.builds(Event, text, attributes, st.integers(1, 2**63)), max_size=2),
        ),
        links=draw(st.lists(st.builds(Link, contexts(), attributes), max_size=2)),
        kind=draw(st.sampled_from(list(SpanKind))),
        status=draw(statuses),
        start_time=start,
        end_time=draw(st.none() | st.integers(start, 2**64 - 1)),
        instrumentation_scope=draw(scopes),
    )


@EXAMPLES
@given(st.lists(spans(), max_size=6))
def test_the_hand_made_encoder_writes_what_the_stock_one_writes(batch: list[ReadableSpan]) -> None:
    stock = encode_spans(batch).SerializePartialToString()
    ours = encode_request(batch)
    assert ExportTraceServiceRequest.FromString(ours) == ExportTraceServiceRequest.FromString(stock)
    assert ours == stock
