"""Traces from Jaeger's HTTP query API (`GET /api/traces/<trace_id>` on the UI port, 16686), as our Span model."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx

from tools.hops import Hop, check
from tools.spans import KINDS, Span

_KINDS = {kind.lower(): kind for kind in KINDS}


def _tags(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {tag["key"]: tag.get("value") for tag in items or []}


def spans_from_jaeger(document: dict[str, Any]) -> list[Span]:
    """Convert the query API's JSON (`{"data": [{"spans": [...], "processes": {...}}]}`) into spans."""
    spans: list[Span] = []
    for trace in document.get("data") or []:
        processes = trace.get("processes") or {}
        for raw in trace.get("spans") or []:
            tags = _tags(raw.get("tags", []))
            parent = next(
                (ref["spanID"] for ref in raw.get("references") or [] if ref.get("refType") == "CHILD_OF"), None
            )
            follows = tuple(
                (ref["traceID"], ref["spanID"])
                for ref in raw.get("references") or []
                if ref.get("refType") != "CHILD_OF"
            )
            start_us = int(raw["startTime"])
            service = (processes.get(raw.get("processID"), {}) or {}).get("serviceName", "unknown")
            status = (
                "ERROR" if tags.get("error") in (True, "true") or tags.get("otel.status_code") == "ERROR" else "UNSET"
            )
            spans.append(
                Span(
                    trace_id=raw["traceID"].rjust(32, "0"),
                    span_id=raw["spanID"].rjust(16, "0"),
                    parent_id=parent.rjust(16, "0") if parent else None,
                    name=raw.get("operationName", ""),
                    kind=_KINDS.get(str(tags.get("span.kind", "internal")).lower(), "INTERNAL"),
                    service=service,
                    start_ns=start_us * 1000,
                    end_ns=(start_us + int(raw.get("duration", 0))) * 1000,
                    attributes=tags,
                    links=follows,
                    status=status,
                )
            )
    return spans


def fetch_trace(query_url: str, trace_id: str, timeout: float = 5.0) -> list[Span]:
    """The spans Jaeger holds for `trace_id`; empty when it does not know the trace (yet)."""
    reply = httpx.get(f"{query_url.rstrip('/')}/api/traces/{trace_id}", timeout=timeout)
    if reply.status_code == 404:
        return []
    reply.raise_for_status()
    return spans_from_jaeger(reply.json())


def wait_for_shape(query_url: str, trace_id: str, hops: Sequence[Hop], timeout: float) -> tuple[list[Span], list[str]]:
    """Poll Jaeger until the trace has every hop or `timeout` passes (exporters batch their spans for seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        spans = fetch_trace(query_url, trace_id)
        problems = check(spans, hops)
        if not problems or time.monotonic() > deadline:
            return spans, problems
        time.sleep(1.0)
