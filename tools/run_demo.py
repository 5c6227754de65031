"""`make run`: the whole demo on loopback with no Docker: first -> broker -> second, traced over OTLP.

Starts an OTLP receiver and the three services, sends one request as the article's browser did, prints the
services' logs and the trace as a tree, then keeps everything running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

import httpx

from tools.otlp_receiver import Receiver
from tools.stack import Stack
from tools.trace_tree import render
from tools.trace_wait import is_complete

BROWSER_HEADERS = {
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) make-run",
    "accept-language": "en-US,en;q=0.5",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="first's port (broker +2, second +1)")
    parser.add_argument("--otlp-port", type=int, default=4318, help="the OTLP/HTTP receiver's port")
    parser.add_argument("--once", action="store_true", help="stop after the first trace (for scripts)")
    args = parser.parse_args()
    try:
        receiver = Receiver(port=args.otlp_port).start()
    except OSError as exc:
        print(
            f"error: cannot listen for OTLP on 127.0.0.1:{args.otlp_port} ({exc}); try --otlp-port",
            file=sys.stderr,
        )
        return 2
    log_dir = Path(tempfile.mkdtemp(prefix="knative-tracing-"))
    stack = Stack(
        otlp_endpoint=receiver.endpoint,
        # A short batch delay so the tree appears at once; the default 5 s is for production.
        env={"OTEL_BSP_SCHEDULE_DELAY": "100"},
        ports={"first": args.port, "second": args.port + 1, "broker": args.port + 2},
        log_dir=log_dir,
    )
    print(f"starting second, broker, first on 127.0.0.1:{args.port + 1}, {args.port + 2}, {args.port} ...")
    try:
        stack.start()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        first = stack.url("first")
        print(f"GET {first}/ (as the article's browser did)\n")
        reply = httpx.get(f"{first}/", headers=BROWSER_HEADERS, timeout=10)
        trace_id = reply.json().get("trace_id") if reply.status_code == 200 else None
        if trace_id:
            receiver.wait_for(lambda spans: is_complete([s for s in spans if s.trace_id == trace_id]), 10)
        logs = LogTail(stack)
        print("--- service logs ---")
        logs.print_new()
        print("--- end of logs ---\n")
        spans = receiver.spans(trace_id) if trace_id else []
        print(render(spans) if trace_id else f"first answered {reply.status_code}: {reply.text}")
        complete = is_complete(spans)
        if not complete:
            print("error: the trace is incomplete (see the logs above)", file=sys.stderr)
            return 1
        if args.once:
            return 0
        print(
            f"\nSend more:  curl -i {first}/   (or: curl -i -X POST -d '{{\"hi\": 1}}' "
            f"-H 'content-type: application/json' {first}/)"
        )
        print(f"Spans also at http://127.0.0.1:{receiver.port}/spans  ·  logs in {log_dir}  ·  Ctrl-C stops.")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        follow(receiver, logs, stop, shown={str(trace_id)})
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        print("\nstopping ...")
        codes = stack.stop()
        receiver.stop()
        print("stopped: " + ", ".join(f"{name} ({_exit(code)})" for name, code in codes.items()))


def _exit(code: int | None) -> str:
    """uvicorn re-raises the stop signal after its graceful shutdown, so a clean stop reads as SIGTERM."""
    if code is not None and code < 0:
        return f"stopped by {signal.Signals(-code).name}"
    return f"exit {code}"


class LogTail:
    """Prints what the services wrote since the last call."""

    def __init__(self, stack: Stack) -> None:
        # The order a request takes, so each block reads as the next hop.
        services = [stack.services[name] for name in ("first", "broker", "second")]
        self._paths = [s.log_path for s in services if s.log_path]
        self._offsets = dict.fromkeys(self._paths, 0)

    def print_new(self) -> None:
        for path in self._paths:
            with path.open("rb") as log:
                log.seek(self._offsets[path])
                text = log.read()
                self._offsets[path] = log.tell()
            if text:
                print(text.decode(errors="replace").rstrip())


def follow(receiver: Receiver, logs: LogTail, stop: threading.Event, shown: set[str]) -> None:
    """Print new log lines and each new complete trace as it arrives, until Ctrl-C."""
    while not stop.wait(0.5):
        logs.print_new()
        for trace_id in {s.trace_id for s in receiver.spans()} - shown:
            spans = receiver.spans(trace_id)
            if is_complete(spans):
                shown.add(trace_id)
                print("\n" + render(spans))


if __name__ == "__main__":
    sys.exit(main())
