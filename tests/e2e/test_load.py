"""A bounded load through first -> broker -> second: every accepted request's event is processed exactly once
and every trace arrives whole at the OTLP receiver (no span dropped at this load; docs/robustness.md)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import httpx

from tests.support import poll_until
from tools.otlp_receiver import Receiver
from tools.spans import Span, by_trace
from tools.stack import Stack

REQUESTS = 300
CONCURRENCY = 16
_PROCESSED = re.compile(r"processed event (\S+),")


async def _load(url: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one() -> httpx.Response:
            async with gate:
                return await client.get(url)

        return await asyncio.gather(*(one() for _ in range(REQUESTS)))


def _shape(spans: list[Span]) -> Counter[tuple[str, str, str]]:
    return Counter((s.service, s.kind, s.name) for s in spans)


def test_every_event_once_and_every_trace_whole(stack: Stack, receiver: Receiver) -> None:
    replies = asyncio.run(_load(stack.url("first") + "/"))
    assert [r.status_code for r in replies] == [200] * REQUESTS, {r.status_code: r.text for r in replies}
    sent = {r.json()["event_id"]: r.json()["trace_id"] for r in replies}
    assert len(sent) == REQUESTS
    assert len(set(sent.values())) == REQUESTS

    def processed() -> Counter[str]:
        return Counter(m.group(1) for m in _PROCESSED.finditer(stack.services["second"].log()) if m.group(1) in sent)

    poll_until(lambda: len(processed()) == REQUESTS, 30, f"second to process all {REQUESTS} events")
    counts = processed()
    assert set(counts.values()) == {1}, [event for event, n in counts.items() if n != 1]

    # Every trace has the same spans as every other: a dropped span shows as a trace with fewer.
    trace_ids = set(sent.values())

    def traces(spans: list[Span]) -> dict[str, list[Span]]:
        return {t: s for t, s in by_trace(spans).items() if t in trace_ids}

    def whole(found: dict[str, list[Span]]) -> bool:
        return len(found) == REQUESTS and len({frozenset(_shape(s).items()) for s in found.values()}) == 1

    found = traces(receiver.wait_for(lambda spans: whole(traces(spans)), 30))
    shapes = Counter(frozenset(_shape(s).items()) for s in found.values())
    assert len(found) == REQUESTS, f"{REQUESTS - len(found)} traces never arrived"
    assert len(shapes) == 1, f"traces differ (a span was dropped?): {shapes.most_common()}"
    shape = _shape(next(iter(found.values())))
    assert {service for service, _, _ in shape} == {"first", "broker", "second"}
    assert all(count == 1 for count in shape.values()), shape
