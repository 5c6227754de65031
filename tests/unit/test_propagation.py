"""Trace-context headers are read exactly as W3C Trace Context and B3 say, and junk never raises."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import SpanContext

from plugins.b3 import B3, B3AwareSampler, B3Multi, B3Single, Sampling, b3_from_context, parse_b3_single
from plugins.w3c import W3CTraceContext, parse_traceparent
from tests.support import GETTER, header_lists, propagators

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
B3_TRACE = "80f198ee56343ba864fe8b2a57d3eff7"
B3_SPAN = "e457b5a2e4d86bd1"
PARENT = "05e3ac9a4f6e3b90"
B3_64 = "0" * 16 + B3_TRACE[16:]
"""A 64-bit B3 trace id (its last 16 digits) as the 128-bit id OpenTelemetry holds."""
ACCEPT = Sampling.ACCEPT

Carrier = dict[str, str | list[str]]


@pytest.fixture
def composite(monkeypatch: pytest.MonkeyPatch) -> TextMapPropagator:
    # The article's era: B3 and W3C, W3C last so that it wins when both are sent and disagree.
    monkeypatch.setenv("OTEL_PROPAGATORS", "b3multi_strict,tracecontext_strict,baggage")
    return propagators()


def _span_context(context: Context) -> SpanContext:
    return trace.get_current_span(context).get_span_context()


def _ids(context: Context) -> tuple[str, str] | None:
    found = _span_context(context)
    return (format(found.trace_id, "032x"), format(found.span_id, "016x")) if found.is_valid else None


def _extract(propagator: TextMapPropagator, carrier: Mapping[str, str | list[str]]) -> Context:
    return propagator.extract(carrier)


# --- W3C traceparent ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "flags"),
    [
        (f"00-{TRACE}-{SPAN}-01", 0x01),
        (f"00-{TRACE}-{SPAN}-00", 0x00),
        (f"00-{TRACE}-{SPAN}-03", 0x03),  # the random-trace-id flag survives (level 2)
        (f"00-{TRACE}-{SPAN}-ff", 0x03),  # reserved flags go out as zero
        (f" \t00-{TRACE}-{SPAN}-01 \t", 0x01),  # optional whitespace around the value
        (f"01-{TRACE}-{SPAN}-01", 0x01),  # a future version with the fields of 00
        (f"cc-{TRACE}-{SPAN}-09-what-the-future-will-be-like", 0x01),  # later fields and flags not understood
    ],
)
def test_valid_traceparent_is_continued(composite: TextMapPropagator, value: str, flags: int) -> None:
    context = _extract(composite, {"traceparent": value})
    assert _ids(context) == (TRACE, SPAN)
    assert _span_context(context).trace_flags == flags
    assert _span_context(context).is_remote


@pytest.mark.parametrize(
    "value",
    [
        "",
        "00-not-a-trace-01",
        f"ff-{TRACE}-{SPAN}-01",  # version ff is forbidden
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"cc-{TRACE}-{SPAN}-01.what-the-future-will-be-like",  # a later field must follow a dash
        f"0-{TRACE}-{SPAN}-01",
        f"00-{TRACE.upper()}-{SPAN}-01",  # lower-case hex only
        f"00-{TRACE}-{SPAN.upper()}-01",
        f"00-{TRACE}-{SPAN}-0A",
        f"0A-{TRACE}-{SPAN}-01",
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero ids are invalid
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-1",
        f"00_{TRACE}_{SPAN}_01",
        f"00-{TRACE}-{SPAN}-01, 00-{TRACE}-{SPAN}-01",  # two headers a proxy joined into one
        f"cc-{TRACE}-{SPAN}-01-" + "x" * 600,  # prohibitively large
    ],
)
def test_malformed_traceparent_starts_a_new_trace(composite: TextMapPropagator, value: str) -> None:
    assert _ids(_extract(composite, {"traceparent": value, "tracestate": "congo=t61rcWkgMzE"})) is None


def test_two_traceparent_headers_start_a_new_trace(composite: TextMapPropagator) -> None:
    other = "0af7651916cd43dd8448eb211c80319c"
    carrier: Carrier = {"traceparent": [f"00-{TRACE}-{SPAN}-01", f"00-{other}-{SPAN}-01"]}
    assert _ids(_extract(composite, carrier)) is None
    # Even two identical ones: a caller that sends two is not one to trust.
    assert _ids(_extract(composite, {"traceparent": [f"00-{TRACE}-{SPAN}-01"] * 2})) is None


def test_request_headers_getter_sees_repeated_headers(composite: TextMapPropagator) -> None:
    raw = [(b"traceparent", f"00-{TRACE}-{SPAN}-01".encode()), (b"traceparent", f"00-{B3_TRACE}-{SPAN}-01".encode())]
    assert _ids(composite.extract(header_lists(raw), getter=GETTER)) is None
    assert _ids(composite.extract(header_lists(raw[:1]), getter=GETTER)) == (TRACE, SPAN)
    tracestate = [(b"tracestate", b"a=1"), (b"tracestate", b"b=2")]
    found = composite.extract(header_lists(raw[:1] + tracestate), getter=GETTER)
    assert _span_context(found).trace_state.to_header() == "a=1,b=2"


# --- W3C tracestate ----------------------------------------------------------------------------------------------


def _tracestate(composite: TextMapPropagator, tracestate: str | list[str]) -> str:
    context = _extract(composite, {"traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": tracestate})
    assert _ids(context) == (TRACE, SPAN), "tracestate must never affect traceparent"
    return _span_context(context).trace_state.to_header()


@pytest.mark.parametrize(
    ("tracestate", "kept"),
    [
        ("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        (["rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE"], "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        (" rojo=1 , ,\tcongo=2 ,", "rojo=1,congo=2"),  # OWS and empty members are allowed
        ("", ""),
        ("0vendor=1,a@b@c=2,tenant@sys=3", "0vendor=1,a@b@c=2,tenant@sys=3"),  # the current key grammar
        ("k= leading space kept", "k= leading space kept"),
        ("rojo=1,rojo=2", ""),  # duplicate keys: the list cannot be trusted
        ("Rojo=1", ""),  # keys are lower-case
        ("rojo=a,b", ""),  # a member without '='
        ("rojo=a=b", ""),  # '=' is not allowed in a value
        (",".join(f"k{i}=v" for i in range(33)), ""),  # more than 32 members
    ],
)
def test_tracestate(composite: TextMapPropagator, tracestate: str | list[str], kept: str) -> None:
    assert _tracestate(composite, tracestate) == kept


def test_tracestate_of_32_members_is_kept_in_order(composite: TextMapPropagator) -> None:
    members = ",".join(f"k{i}=v{i}" for i in range(32))
    assert _tracestate(composite, members) == members


def test_tracestate_travels_to_the_next_hop_unchanged() -> None:
    tracer = TracerProvider(sampler=B3AwareSampler(ParentBased(ALWAYS_ON))).get_tracer("test")
    w3c = W3CTraceContext()
    incoming = {"traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": "0vendor=x,congo=t61rcWkgMzE"}
    with tracer.start_as_current_span("server", context=w3c.extract(incoming)):
        outgoing: dict[str, str] = {}
        w3c.inject(outgoing)
    assert outgoing["tracestate"] == "0vendor=x,congo=t61rcWkgMzE"
    assert outgoing["traceparent"].startswith(f"00-{TRACE}-")
    assert not outgoing["traceparent"].startswith(f"00-{TRACE}-{SPAN}")


# --- B3 ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("carrier", "trace_id", "sampling"),
    [
        ({"b3": f"{B3_TRACE}-{B3_SPAN}-1-{PARENT}"}, B3_TRACE, Sampling.ACCEPT),
        ({"b3": f"{B3_TRACE}-{B3_SPAN}-1"}, B3_TRACE, Sampling.ACCEPT),
        ({"b3": f"{B3_TRACE}-{B3_SPAN}-0"}, B3_TRACE, Sampling.DENY),
        ({"b3": f"{B3_TRACE}-{B3_SPAN}-d"}, B3_TRACE, Sampling.DEBUG),
        ({"b3": f"{B3_TRACE}-{B3_SPAN}"}, B3_TRACE, None),  # defer
        ({"b3": f"{B3_TRACE[16:]}-{B3_SPAN}-1"}, B3_64, Sampling.ACCEPT),  # a 64-bit trace id
        ({"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-sampled": "1"}, B3_TRACE, Sampling.ACCEPT),
        ({"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-sampled": "0"}, B3_TRACE, Sampling.DENY),
        ({"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-sampled": "true"}, B3_TRACE, Sampling.ACCEPT),
        ({"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-flags": "1"}, B3_TRACE, Sampling.DEBUG),
        ({"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-flags": "2"}, B3_TRACE, None),
        ({"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN}, B3_TRACE, None),
        ({"x-b3-traceid": B3_TRACE[16:], "x-b3-spanid": B3_SPAN, "x-b3-parentspanid": PARENT}, B3_64, None),
        # The first value wins.
        ({"x-b3-traceid": [B3_TRACE, TRACE], "x-b3-spanid": B3_SPAN, "x-b3-sampled": ["1", "0"]}, B3_TRACE, ACCEPT),
    ],
)  # fmt: skip
def test_valid_b3_is_continued(
    composite: TextMapPropagator, carrier: Carrier, trace_id: str, sampling: Sampling | None
) -> None:
    context = _extract(composite, carrier)
    assert _ids(context) == (trace_id, B3_SPAN)
    assert _span_context(context).trace_flags.sampled == (sampling is not None and sampling.sampled)
    found = b3_from_context(context)
    assert found is not None
    assert found.sampling is sampling


@pytest.mark.parametrize(
    "carrier",
    [
        {"b3": f"{B3_TRACE.upper()}-{B3_SPAN}-1"},  # lower-hex only
        {"b3": f"{B3_TRACE}-{B3_SPAN.upper()}-1"},
        {"b3": f"{B3_TRACE}-{B3_SPAN}-x"},  # a bad sampling character
        {"b3": f"{B3_TRACE}-{B3_SPAN}-true"},
        {"b3": f"{B3_TRACE}-{B3_SPAN}-1-xyz"},  # a bad parent span id
        {"b3": f"{B3_TRACE}-{B3_SPAN}-1-{PARENT}-extra"},
        {"b3": f"{B3_TRACE[:20]}-{B3_SPAN}-1"},  # trace ids are 16 or 32 digits
        {"b3": f"{'0' * 32}-{B3_SPAN}-1"},
        {"b3": f"{B3_TRACE}-{'0' * 16}-1"},
        {"b3": "-"},
        {"b3": ""},
        {"b3": "2"},
        {"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-sampled": ""},  # empty means malformed
        {"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-sampled": "yes"},
        {"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-parentspanid": "-"},
        {"x-b3-traceid": B3_TRACE.upper(), "x-b3-spanid": B3_SPAN, "x-b3-sampled": "1"},
        {"x-b3-traceid": B3_TRACE, "x-b3-sampled": "1"},  # a span id is required with a trace id
        {"x-b3-spanid": B3_SPAN, "x-b3-sampled": "1"},
        {"x-b3-parentspanid": PARENT},
    ],
)
def test_malformed_b3_starts_a_new_trace(composite: TextMapPropagator, carrier: Carrier) -> None:
    context = _extract(composite, carrier)
    assert _ids(context) is None
    assert b3_from_context(context) is None


@pytest.mark.parametrize(
    ("carrier", "sampling"),
    [
        ({"b3": "0"}, Sampling.DENY),
        ({"b3": "1"}, Sampling.ACCEPT),
        ({"b3": "d"}, Sampling.DEBUG),
        ({"x-b3-sampled": "0"}, Sampling.DENY),
        ({"x-b3-flags": "1"}, Sampling.DEBUG),
    ],
)
def test_b3_decision_without_ids(composite: TextMapPropagator, carrier: Carrier, sampling: Sampling) -> None:
    context = _extract(composite, carrier)
    assert _ids(context) is None
    assert b3_from_context(context) == B3(None, None, sampling)


def test_single_b3_takes_precedence_over_multi(composite: TextMapPropagator) -> None:
    multi = {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "1"}
    context = _extract(composite, {**multi, "b3": f"{B3_TRACE}-{B3_SPAN}-0"})
    assert _ids(context) == (B3_TRACE, B3_SPAN)
    assert not _span_context(context).trace_flags.sampled
    # A malformed single header is ignored, and the multi headers are read (as Brave and OTel Java do).
    assert _ids(_extract(composite, {**multi, "b3": "garbage"})) == (TRACE, SPAN)


def test_w3c_wins_over_b3(composite: TextMapPropagator) -> None:
    carrier = {"traceparent": f"00-{TRACE}-{SPAN}-01", "b3": f"{B3_TRACE}-{B3_SPAN}-0"}
    assert _ids(_extract(composite, carrier)) == (TRACE, SPAN)
    # ... but a malformed traceparent leaves the B3 context in place.
    assert _ids(_extract(composite, {**carrier, "traceparent": "00-junk-01"})) == (B3_TRACE, B3_SPAN)


@pytest.mark.parametrize(("propagator", "header"), [(B3Multi(), "x-b3-traceid"), (B3Single(), "b3")])
def test_b3_injection_keeps_64_bit_trace_ids_16_digits_wide(propagator: TextMapPropagator, header: str) -> None:
    tracer = TracerProvider(sampler=B3AwareSampler(ParentBased(ALWAYS_ON))).get_tracer("test")
    with tracer.start_as_current_span("server", context=propagator.extract({"b3": f"{B3_TRACE[16:]}-{B3_SPAN}-1"})):
        outgoing: dict[str, str] = {}
        propagator.inject(outgoing)
    assert outgoing[header].startswith(B3_TRACE[16:])
    assert not outgoing[header].startswith(B3_TRACE[16:] + "0")


def test_otel_propagators_chooses_the_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext_strict")
    only_w3c = propagators()
    assert _ids(only_w3c.extract({"b3": f"{B3_TRACE}-{B3_SPAN}-1"})) is None
    assert only_w3c.fields == {"traceparent", "tracestate"}
    monkeypatch.setenv("OTEL_PROPAGATORS", "b3_strict")
    outgoing: dict[str, str] = {}
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("root"):
        propagators().inject(outgoing)
    assert set(outgoing) == {"b3"}
    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext_strict,jaeger")
    with pytest.raises(ValueError, match="jaeger not found"):
        propagators()


# --- sampling: B3 decisions are honoured, "defer" is left to this service's sampler ----------------------------


def _recorded(
    delegate: Sampler, carrier: Mapping[str, str | list[str]], composite: TextMapPropagator
) -> tuple[bool, bool, dict[str, str]]:
    """Whether this service records the span continuing `carrier` and its child, and the headers it sends on."""
    tracer = TracerProvider(sampler=B3AwareSampler(delegate)).get_tracer("test")
    server_context = composite.extract(carrier)
    with (
        tracer.start_as_current_span("server", context=server_context) as server,
        tracer.start_as_current_span("client") as client,
    ):
        outgoing: dict[str, str] = {}
        composite.inject(outgoing)
        return server.is_recording(), client.is_recording(), outgoing


@pytest.mark.parametrize(
    ("carrier", "recorded"),
    [
        ({"b3": f"{B3_TRACE}-{B3_SPAN}-0"}, False),
        ({"b3": "0"}, False),
        ({"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-sampled": "0"}, False),
        ({"x-b3-sampled": "0"}, False),
        ({"b3": f"{B3_TRACE}-{B3_SPAN}-1"}, True),
        ({"b3": f"{B3_TRACE}-{B3_SPAN}-d"}, True),
        ({"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-flags": "1"}, True),
        ({"b3": "1"}, True),
    ],
)
def test_b3_decisions_are_honoured(composite: TextMapPropagator, carrier: Carrier, recorded: bool) -> None:
    # The span that continues the caller follows an explicit B3 decision whatever the configured sampler ...
    for delegate in (ALWAYS_ON, ALWAYS_OFF, ParentBased(ALWAYS_ON), ParentBased(ALWAYS_OFF)):
        assert _recorded(delegate, carrier, composite)[0] == recorded, delegate.get_description()
    # ... and with the default parent-based one, its children and the next hop follow it too.
    server, client, outgoing = _recorded(ParentBased(ALWAYS_ON), carrier, composite)
    assert server == client == recorded
    assert int(outgoing["traceparent"][-2:], 16) & 0x01 == recorded
    assert outgoing["x-b3-sampled"] == ("1" if recorded else "0")


DEFERRED: list[Carrier] = [{"b3": f"{B3_TRACE}-{B3_SPAN}"}, {"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN}]


@pytest.mark.parametrize("carrier", DEFERRED)
def test_b3_defer_lets_this_services_sampler_decide(composite: TextMapPropagator, carrier: Carrier) -> None:
    recorded, _, outgoing = _recorded(ParentBased(ALWAYS_ON), carrier, composite)
    assert recorded
    assert outgoing["x-b3-traceid"] == B3_TRACE  # the caller's trace is continued
    assert not _recorded(ParentBased(ALWAYS_OFF), carrier, composite)[0]


def test_w3c_sampled_flag_is_left_to_the_configured_sampler(composite: TextMapPropagator) -> None:
    unsampled = {"traceparent": f"00-{TRACE}-{SPAN}-00", "b3": f"{B3_TRACE}-{B3_SPAN}-1"}
    assert not _recorded(ParentBased(ALWAYS_ON), unsampled, composite)[0]
    sampled = {"traceparent": f"00-{TRACE}-{SPAN}-01", "b3": "0"}
    assert _recorded(ParentBased(ALWAYS_ON), sampled, composite)[0]
    # Both formats with the same ids, as Knative <= 1.18 sends them: the W3C header is the one that won.
    same_ids = {"traceparent": f"00-{B3_TRACE}-{B3_SPAN}-01", "b3": f"{B3_TRACE}-{B3_SPAN}-0"}
    assert _recorded(ParentBased(ALWAYS_ON), same_ids, composite)[0]
    deferred = {"traceparent": f"00-{B3_TRACE}-{B3_SPAN}-01", "b3": f"{B3_TRACE}-{B3_SPAN}"}
    assert _recorded(ParentBased(ALWAYS_OFF), deferred, composite)[0]


# --- properties --------------------------------------------------------------------------------------------------

HEADER_NAMES = ["traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid"]
HEADER_NAMES += ["x-b3-sampled", "x-b3-flags", "baggage"]
_hexish = st.text(alphabet="0123456789abcdefABCDEF-xd ,=\t", max_size=80)
_junk = st.one_of(st.text(max_size=120), _hexish)
_values = st.one_of(_junk, st.lists(_junk, min_size=1, max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(HEADER_NAMES), _values))
def test_header_junk_never_raises_and_yields_a_valid_context_or_none(carrier: Carrier) -> None:
    context = propagators("b3multi_strict,b3_strict,tracecontext_strict,baggage").extract(carrier)
    found = _span_context(context)
    if found.is_valid:
        assert found.is_remote
        assert 0 < found.trace_id < 2**128
        assert 0 < found.span_id < 2**64
        assert found.trace_flags & ~0x03 == 0
    else:
        assert found.trace_id == 0


_ows = st.text(alphabet=" \t", max_size=3)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 2**128 - 1),
    st.integers(1, 2**64 - 1),
    st.integers(0, 255),
    st.integers(0, 254),
    _ows,
    _ows,
)
def test_any_well_formed_traceparent_is_continued(  # noqa: PLR0917 - hypothesis passes them positionally
    trace_id: int, span_id: int, flags: int, version: int, before: str, after: str
) -> None:
    suffix = "-anything-later" if version > 0 else ""
    value = f"{before}{version:02x}-{trace_id:032x}-{span_id:016x}-{flags:02x}{suffix}{after}"
    parsed = parse_traceparent(value)
    assert parsed is not None
    assert (parsed.trace_id, parsed.span_id, parsed.flags) == (trace_id, span_id, flags & 0x03)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.integers(1, 2**64 - 1).map(lambda i: f"{i:016x}"),
        st.integers(1, 2**128 - 1).map(lambda i: f"{i:032x}"),
    ),
    st.integers(1, 2**64 - 1),
    st.sampled_from(["", "-0", "-1", "-d"]),
    st.one_of(st.just(""), st.integers(1, 2**64 - 1).map(lambda i: f"-{i:016x}")),
)  # fmt: skip
def test_any_well_formed_b3_is_continued(trace_id: str, span_id: int, sampling: str, parent: str) -> None:
    if parent and not sampling:
        parent = ""  # the parent span id only follows a sampling state
    found = parse_b3_single(f"{trace_id}-{span_id:016x}{sampling}{parent}")
    assert found is not None
    assert (found.trace_id, found.span_id) == (int(trace_id, 16), span_id)
    assert found.sampling is {"": None, "-0": Sampling.DENY, "-1": Sampling.ACCEPT, "-d": Sampling.DEBUG}[sampling]
