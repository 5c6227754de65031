"""`make run`: the whole demo on loopback with no Docker: first -> broker -> second, traced over OTLP.

Starts an OTLP receiver and the three services, sends one request as the article's browser did, prints the
services' logs and the trace as a tree, then keeps everything running until Ctrl-C.

The workshop's switches (docs/workshop.md) change one thing each: --broken (first sends no trace context, the
event's journey splits into two traces), --extension (the event carries its own context), --untraced-hop (a
hop that drops trace headers sits between the broker and second), --zero-code (opentelemetry-instrument).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

import httpx

from tools import untraced_hop, zero_code
from tools.event_traces import EVENT_ID, event_traces, show, wait_for_event
from tools.otlp_receiver import Receiver
from tools.stack import Service, Stack
from tools.trace_tree import render

BROWSER_HEADERS = {
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) make-run",
    "accept-language": "en-US,en;q=0.5",
}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="first's port (broker +2, second +1)")
    parser.add_argument("--otlp-port", type=int, default=4318, help="the OTLP/HTTP receiver's port")
    parser.add_argument("--once", action="store_true", help="stop after the first trace (for scripts)")
    parser.add_argument("--broken", action="store_true", help="first sends no trace context (PROPAGATE_CONTEXT=false)")
    parser.add_argument(
        "--extension", action="store_true", help="events also carry traceparent as an attribute (EVENT_TRACE_EXTENSION)"
    )
    parser.add_argument(
        "--untraced-hop", action="store_true", help="a hop that drops trace headers before second (port +3)"
    )
    parser.add_argument("--zero-code", action="store_true", help="run the services under opentelemetry-instrument")
    return parser.parse_args()


def _stack(args: argparse.Namespace, otlp_endpoint: str, log_dir: Path) -> Stack:
    """The three services, with the workshop switches in `args` turned into their settings."""
    first_env = {"PROPAGATE_CONTEXT": "false"} if args.broken else {}
    if args.extension:
        first_env["EVENT_TRACE_EXTENSION"] = "true"
    hop = {"BROKER_SUBSCRIBERS": f"second=http://127.0.0.1:{args.port + 3}"} if args.untraced_hop else {}
    return Stack(
        otlp_endpoint=otlp_endpoint,
        # A short batch delay so the tree appears at once; the default 5 s is for production.
        env={"OTEL_BSP_SCHEDULE_DELAY": "100", **(zero_code.ENV if args.zero_code else {})},
        service_env={"first": first_env, "broker": hop},
        ports={"first": args.port, "second": args.port + 1, "broker": args.port + 2},
        log_dir=log_dir,
        launcher=zero_code.LAUNCHER if args.zero_code else (),
    )


def main() -> int:
    args = _arguments()
    try:
        receiver = Receiver(port=args.otlp_port).start()
    except OSError as exc:
        print(
            f"error: cannot listen for OTLP on 127.0.0.1:{args.otlp_port} ({exc}); try --otlp-port",
            file=sys.stderr,
        )
        return 2
    log_dir = Path(tempfile.mkdtemp(prefix="knative-tracing-"))
    stack = _stack(args, receiver.endpoint, log_dir)
    print(f"starting second, broker, first on 127.0.0.1:{args.port + 1}, {args.port + 2}, {args.port} ...")
    for switch in _switches(args):
        print(f"  {switch}")
    hop: Service | None = None
    try:
        stack.start()
        if args.untraced_hop:
            hop = untraced_hop.start(args.port + 3, stack.url("second"), log_dir / "untraced-hop.log")
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    try:
        first = stack.url("first")
        print(f"GET {first}/ (as the article's browser did)\n")
        reply = httpx.get(f"{first}/", headers=BROWSER_HEADERS, timeout=10)
        event_id = reply.json().get("event_id") if reply.status_code == 200 else None
        traces = wait_for_event(receiver, event_id, 10) if event_id else None
        logs = LogTail(stack, hop)
        print("--- service logs ---")
        logs.print_new()
        print("--- end of logs ---\n")
        if traces is None:
            arrived = {s.trace_id for s in receiver.spans() if event_id and s.attributes.get(EVENT_ID) == event_id}
            spans = [s for s in receiver.spans() if s.trace_id in arrived]
            print(render(spans) if spans else f"first answered {reply.status_code}: {reply.text}")
            print("error: the trace is incomplete (see the logs above)", file=sys.stderr)
            return 1
        print(show(traces, str(event_id)))
        if args.once:
            return 0
        print(
            f"\nSend more:  curl -i {first}/   (or: curl -i -X POST -d '{{\"hi\": 1}}' "
            f"-H 'content-type: application/json' {first}/)"
        )
        print(f"Spans also at http://127.0.0.1:{receiver.port}/spans  ·  logs in {log_dir}  ·  Ctrl-C stops.")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        follow(receiver, logs, stop, shown={str(event_id)})
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        print("\nstopping ...")
        if hop is not None:
            hop.process.terminate()
            hop.process.wait()
        codes = stack.stop()
        receiver.stop()
        print("stopped: " + ", ".join(f"{name} ({_exit(code)})" for name, code in codes.items()))


def _exit(code: int | None) -> str:
    """uvicorn re-raises the stop signal after its graceful shutdown, so a clean stop reads as SIGTERM."""
    if code is not None and code < 0:
        return f"stopped by {signal.Signals(-code).name}"
    return f"exit {code}"


def _switches(args: argparse.Namespace) -> list[str]:
    """One line for each workshop switch that is on, naming the setting it changes."""
    lines = []
    if args.broken:
        lines.append("first: PROPAGATE_CONTEXT=false (events leave with no trace context)")
    if args.extension:
        lines.append("first: EVENT_TRACE_EXTENSION=true (events carry traceparent as an attribute)")
    if args.untraced_hop:
        lines.append(f"broker -> untraced hop on 127.0.0.1:{args.port + 3} (drops trace headers) -> second")
    if args.zero_code:
        lines.append("all three under opentelemetry-instrument (zero-code)")
    return lines


class LogTail:
    """Prints what the services (and the untraced hop, if any) wrote since the last call."""

    def __init__(self, stack: Stack, hop: Service | None = None) -> None:
        # The order a request takes, so each block reads as the next hop.
        services = [stack.services[name] for name in ("first", "broker", "second")]
        if hop is not None:
            services.insert(2, hop)
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
    """Print new log lines and each new event's trace(s) once its journey is complete, until Ctrl-C."""
    while not stop.wait(0.5):
        logs.print_new()
        spans = receiver.spans()
        for event_id in {str(s.attributes[EVENT_ID]) for s in spans if EVENT_ID in s.attributes} - shown:
            traces = event_traces(spans, event_id)
            if traces is not None:
                shown.add(event_id)
                print("\n" + show(traces, event_id))


if __name__ == "__main__":
    sys.exit(main())
