"""`make up`, once `docker compose up --wait` has the stack healthy: one request in, its trace out of Jaeger.

Sends one request to first as the article's browser did, fetches that trace from Jaeger's query API, prints it as
the same tree `make run` prints, with the Jaeger UI link of the trace. When spans are missing it names the hop
and says where the chain breaks, with the same check `make verify` runs on the cluster (tools/verify_trace.py).
"""

from __future__ import annotations

import argparse
import sys
import time

import httpx

from tools.hops import BROWSER_HEADERS, LOCAL_HOPS
from tools.jaeger import wait_for_shape
from tools.spans import Span
from tools.trace_tree import render


class ComposeUpError(Exception):
    """A step of `make up` failed; the message says which and what to look at."""


def wait_for_jaeger(jaeger: str, timeout: float) -> None:
    """Jaeger's image cannot report its own health to compose, so its query API is asked directly."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{jaeger}/api/services", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise ComposeUpError(
                f"Jaeger's query API at {jaeger}/api/services did not answer within {timeout:.0f}s "
                "(see `make logs`; `docker compose ps` shows whether jaeger is running)"
            )
        time.sleep(0.25)


def send_request(first: str) -> tuple[str, str | None]:
    """GET first's `/`: the trace id it answers with, and its error when it could not send the event.

    first names the trace even when the broker fails it (503, 504, 502), and that trace shows where it stopped.
    """
    try:
        reply = httpx.get(f"{first}/", headers=BROWSER_HEADERS, timeout=10)
    except httpx.HTTPError as exc:
        raise ComposeUpError(f"first does not answer at {first}/ ({exc!r}); is the stack up? (`make up`)") from None
    try:
        body = reply.json()
    except ValueError:
        body = None
    trace_id = body.get("trace_id") if isinstance(body, dict) else None
    if not isinstance(trace_id, str) or not trace_id:
        raise ComposeUpError(f"first answered {reply.status_code}: {reply.text}")
    error = None if reply.status_code == 200 else f"first answered {reply.status_code}: {reply.text}"
    return trace_id, error


def wait_for_trace(jaeger: str, trace_id: str, timeout: float) -> tuple[list[Span], list[str]]:
    """The trace's spans once every local hop is in Jaeger, or what it holds when `timeout` runs out, with the
    problems `make verify`'s check finds in them (the hops are declared once, in tools/hops.py)."""
    try:
        return wait_for_shape(jaeger, trace_id, LOCAL_HOPS, timeout)
    except httpx.HTTPError as exc:
        raise ComposeUpError(f"cannot read trace {trace_id} from Jaeger at {jaeger}: {exc!r}") from None


def report(spans: list[Span], problems: list[str], trace_id: str, jaeger: str) -> str:
    """What `make up` prints: the tree, the trace's Jaeger link, and each missing or broken hop."""
    lines = [render(spans) if spans else f"trace {trace_id}: Jaeger holds no span of it", ""]
    lines.append(f"In Jaeger: {jaeger}/trace/{trace_id}")
    if problems:
        lines.append("error: the trace is incomplete:")
        lines.extend(f"  - {problem}" for problem in problems)
        lines.append("The logs say what each service did with the request: `make logs`.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--first", default="http://127.0.0.1:8080", help="first's published URL")
    parser.add_argument("--jaeger", default="http://127.0.0.1:16686", help="the Jaeger UI / query API URL")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for Jaeger and the trace")
    args = parser.parse_args()
    first, jaeger = args.first.rstrip("/"), args.jaeger.rstrip("/")
    try:
        wait_for_jaeger(jaeger, args.timeout)
        print(f"GET {first}/ (as the article's browser did)")
        trace_id, error = send_request(first)
        if error:
            print(f"error: {error}", file=sys.stderr)
        print(f"trace id {trace_id}: waiting for its spans in Jaeger ...\n")
        spans, problems = wait_for_trace(jaeger, trace_id, args.timeout)
    except ComposeUpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report(spans, problems, trace_id, jaeger))
    if problems or error:
        return 1
    print(f"\nSend more: curl -i {first}/  ·  logs: make logs  ·  stop: make down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
