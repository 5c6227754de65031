"""The trace-header parsers cost at most linear work in their input, and stop growing at their caps.

Work is counted, not timed: `work()` counts the Python-level events (calls, lines, returns) a parse runs under
`sys.settrace`. A loop over the input, or over pairs of its members, shows up there in full, while nothing
depends on how busy the machine is. The C-level steps the parsers take (`str.split`, `str.strip`, anchored
regular expressions with possessive quantifiers) are linear by construction. The properties:

- doubling the input at most doubles the work (plus a constant): no quadratic loop;
- past the cap (32 `tracestate` members, 512 characters of `traceparent`, the longest valid B3 value) the work
  no longer grows at all: a request cannot make a parser loop longer by sending more.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from plugins.b3 import parse_b3_multi, parse_b3_single
from plugins.cloudevents import header_value
from plugins.escaping import escape
from plugins.w3c import W3CTraceContext, parse_traceparent, parse_tracestate
from tests.support import GETTER

# Hypothesis's explain phase traces too; the count must be the only tracer.
COST = settings(max_examples=40, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink))
SLACK = 200
"""Constant work a parse may do besides its loop (setup, a regex cache lookup)."""


def work(parse: Callable[..., Any], *args: Any) -> int:
    """How many Python calls, lines and returns `parse(*args)` runs."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Callable[..., Any]:
        nonlocal count
        count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        parse(*args)
    finally:
        sys.settrace(previous)
    return count


_KEY = st.from_regex(r"[a-z][a-z0-9_\-*/@]{0,8}", fullmatch=True)
_VALUE = st.from_regex(r"[!-+\--<>-~]{1,12}", fullmatch=True)


def _tracestate(prefix: str, value: str, members: int) -> list[str]:
    # Distinct keys: the parser must compare each with the earlier ones, the quadratic trap of the old code.
    return [",".join(f"{prefix}{i}={value}" for i in range(members))]


@COST
@given(prefix=_KEY, value=_VALUE, members=st.integers(1, 400))
def test_tracestate_work_is_linear_and_capped(prefix: str, value: str, members: int) -> None:
    once = work(parse_tracestate, _tracestate(prefix, value, members))
    twice = work(parse_tracestate, _tracestate(prefix, value, 2 * members))
    assert twice <= 2 * once + SLACK, (members, once, twice)
    at_cap = work(parse_tracestate, _tracestate(prefix, value, 33))
    assert work(parse_tracestate, _tracestate(prefix, value, 33 + members)) <= at_cap + SLACK


@COST
@given(text=st.text(min_size=1, max_size=64), repeat=st.integers(2, 3000))
def test_tracestate_junk_costs_no_more_than_a_full_list(text: str, repeat: int) -> None:
    full = work(parse_tracestate, _tracestate("k", "v" * 250, 32))
    assert work(parse_tracestate, [text * repeat]) <= full + SLACK
    assert work(parse_tracestate, [text] * repeat) <= full + SLACK  # many tracestate headers


@COST
@given(text=st.text(min_size=1, max_size=64), repeat=st.integers(1, 5000))
def test_traceparent_and_b3_work_does_not_grow_with_the_input(text: str, repeat: int) -> None:
    valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    long = valid + "-" + text * repeat
    cases: list[tuple[Callable[[Any], object], object, object]] = [
        (parse_traceparent, valid, long),
        (parse_b3_single, "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1", long),
        (parse_b3_multi, {"x-b3-traceid": "a" * 32}, {"x-b3-traceid": long, "x-b3-sampled": long}),
    ]
    for parse, short, big in cases:
        assert work(parse, big) <= work(parse, short) + SLACK, getattr(parse, "__name__", parse)


@COST
@given(members=st.integers(1, 3000))
def test_the_w3c_extractor_reads_a_huge_tracestate_in_bounded_work(members: int) -> None:
    def carrier(count: int) -> dict[str, list[str]]:
        state = ",".join(f"k{i}=v" for i in range(count))
        return {"traceparent": ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"], "tracestate": [state]}

    extractor = W3CTraceContext()
    getter = GETTER  # every value of each header, as FastAPI's telemetry hands them over
    assert (
        work(extractor.extract, carrier(members), None, getter)
        <= work(extractor.extract, carrier(33), None, getter) + SLACK
    )


@COST
@given(text=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=32))
def test_cloudevents_header_values_and_log_escaping_are_linear(text: str) -> None:
    quoted = '"' + text.replace('"', "") + '"'
    for parse in (lambda t: _quietly(header_value, "ce-x", t), escape):
        once, twice = work(parse, quoted * 50), work(parse, quoted * 100)
        assert twice <= 2 * once + SLACK, (once, twice)


def _quietly(parse: Callable[[str, str], str], name: str, text: str) -> None:
    with contextlib.suppress(Exception):  # a refusal costs work too; only the work is measured
        parse(name, text)


def test_the_work_counter_sees_a_quadratic_loop() -> None:
    """The measure can fail: the old tracestate check (each key against every earlier one) is caught."""

    def quadratic(values: list[str]) -> None:
        seen: list[str] = []
        for member in values[0].split(","):
            key = member.partition("=")[0]
            if any(key == earlier for earlier in seen):
                return
            seen.append(key)

    once, twice = work(quadratic, _tracestate("k", "v", 200)), work(quadratic, _tracestate("k", "v", 400))
    assert twice > 2 * once + SLACK
