"""`make run`: the whole demo on loopback with no Docker: first -> broker -> second, traced over OTLP.

Starts an OTLP receiver and the three services, sends one request as the article's browser did, prints the
services' logs and the trace as a tree, then keeps everything running until Ctrl-C.

The workshop's switches (docs/workshop.md) change one thing each: --broken (first sends no trace context, the
event's journey splits into two traces), --extension (the event carries its own context), --untraced-hop (a
hop that drops trace headers sits between the broker and second), --zero-code (opentelemetry-instrument).
"""

from __future__ import annotations

import argparse
import io
import re
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import httpx

from tools import knative_real, zero_code
from tools.hops import BROWSER_HEADERS
from tools.otlp_receiver import Receiver
from tools.run_report import Block, TraceReport
from tools.stack import Service, Stack, in_use, start_untraced_hop

DEFAULT_PORT = 8080
DEFAULT_OTLP_PORT = 4318
SWITCHES = (
    ("broken", "BROKEN"),
    ("extension", "EXTENSION"),
    ("untraced_hop", "UNTRACED_HOP"),
    ("zero_code", "ZERO_CODE"),
)
"""Each workshop option and the make variable that turns it on (the Makefile's `switch`)."""
WAIT_FOR_FIRST_TRACE_S = 10.0
# uvicorn's life-cycle lines: four per service at start, four at stop, the same every time. --verbose keeps them.
_UVICORN_NOISE = re.compile(
    r"\bINFO\b.*(Started server process|Waiting for application (startup|shutdown)\.|"
    r"Application (startup|shutdown) complete\.|Uvicorn running on|Shutting down|Finished server process)"
)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="first's port (second +1, broker +2)")
    parser.add_argument("--otlp-port", type=int, default=DEFAULT_OTLP_PORT, help="the OTLP/HTTP receiver's port")
    parser.add_argument("--once", action="store_true", help="stop after the first trace (for scripts)")
    parser.add_argument("--verbose", action="store_true", help="every log line, uvicorn's start and stop too")
    parser.add_argument("--broken", action="store_true", help="first sends no trace context (PROPAGATE_CONTEXT=false)")
    parser.add_argument(
        "--extension", action="store_true", help="events also carry traceparent as an attribute (EVENT_TRACE_EXTENSION)"
    )
    parser.add_argument(
        "--untraced-hop", action="store_true", help="a hop that drops trace headers before second (port +3)"
    )
    parser.add_argument("--zero-code", action="store_true", help="run the services under opentelemetry-instrument")
    parser.add_argument(
        "--knative-real", action="store_true", help="Knative's real queue-proxy and broker (tools/knative_real.py)"
    )
    return parser.parse_args()


def _ports(args: argparse.Namespace, first: int | None = None) -> dict[str, int]:
    """The loopback port of each process make run starts, from first's."""
    base = args.port if first is None else first
    ports = {"first": base, "second": base + 1, "broker": base + 2}
    if args.untraced_hop:
        ports["the untraced hop"] = base + 3
    return ports


def _free_first_port(args: argparse.Namespace) -> int:
    """A port for first with the ports after it free too: the next thousand up (9080 for 8080) when it can."""
    start: int = args.port
    for base in chain(range(start + 1000, 64000, 1000), range(20000, 32000)):
        if not any(in_use(port) for port in _ports(args, base).values()):
            return base
    raise RuntimeError("no free ports on 127.0.0.1")


def _free_otlp_port(args: argparse.Namespace) -> int:
    start: int = args.otlp_port
    candidates = chain(range(start + 1, start + 100), range(20000, 32000))
    return next(port for port in candidates if not in_use(port))


def command(args: argparse.Namespace, port: int, otlp_port: int) -> str:
    """The `make run` line that runs what `args` asked for, on these ports."""
    words = ["make", "run", *(f"{name}=1" for option, name in SWITCHES if getattr(args, option))]
    flags = [f"--port {port}"] if port != DEFAULT_PORT else []
    flags += [f"--otlp-port {otlp_port}"] if otlp_port != DEFAULT_OTLP_PORT else []
    flags += [flag for flag, on in (("--once", args.once), ("--verbose", args.verbose)) if on]
    return " ".join(words + ([f'RUN_FLAGS="{" ".join(flags)}"'] if flags else []))


def busy_ports(args: argparse.Namespace, known: dict[str, int] | None = None) -> str | None:
    """None when every port is free; else which are taken and the command to type to use free ones."""
    busy = dict(known or {})
    busy.update({name: port for name, port in _ports(args).items() if in_use(port)})
    if in_use(args.otlp_port):
        busy["the OTLP receiver"] = args.otlp_port
    if not busy:
        return None
    port = _free_first_port(args) if set(busy) & set(_ports(args)) else args.port
    otlp_port = _free_otlp_port(args) if "the OTLP receiver" in busy else args.otlp_port
    taken = ", ".join(f"{port} ({name})" for name, port in busy.items())
    hint = " (a local Collector or Jaeger often holds 4318)" if "the OTLP receiver" in busy else ""
    return (
        f"error: {'port' if len(busy) == 1 else 'ports'} {taken} on 127.0.0.1 already in use{hint}.\n"
        f"Run the demo on free ports instead:\n\n    {command(args, port, otlp_port)}\n"
    )


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


class StartFailed(Exception):
    """Nothing is left running; the message says why, and what to type when a port is taken."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Demo:
    """The receiver, the three services (and the untraced hop), and what is printed about them."""

    args: argparse.Namespace
    receiver: Receiver
    stack: Stack
    log_dir: Path
    hop: Service | None = None
    report: TraceReport = field(default_factory=TraceReport)
    exited: set[str] = field(default_factory=set)
    logs: LogTail = field(init=False)

    @classmethod
    def start(cls, args: argparse.Namespace) -> Demo:
        busy = busy_ports(args)
        if busy:
            raise StartFailed(busy, 2)
        try:
            receiver = Receiver(port=args.otlp_port).start()
        except OSError:  # taken since the check
            raise StartFailed(str(busy_ports(args, {"the OTLP receiver": args.otlp_port})), 2) from None
        log_dir = Path(tempfile.mkdtemp(prefix="knative-tracing-"))
        demo = cls(args, receiver, _stack(args, receiver.endpoint, log_dir), log_dir)
        print(f"starting second, broker, first on 127.0.0.1:{args.port + 1}, {args.port + 2}, {args.port} ...")
        for switch in _switches(args):
            print(f"  {switch}")
        try:
            demo.stack.start()
            if args.untraced_hop:
                demo.hop = start_untraced_hop(args.port + 3, demo.stack.url("second"), log_dir / "untraced-hop.log")
        except RuntimeError as exc:
            demo.stack.stop()
            receiver.stop()
            if "address already in use" in str(exc):  # taken since the check
                raise StartFailed(str(busy_ports(args)), 2) from None
            raise StartFailed(f"error: {exc}", 1) from None
        demo.logs = LogTail(demo.stack, demo.hop, verbose=args.verbose)
        return demo

    @property
    def services(self) -> list[Service]:
        return [*self.stack.services.values(), *([self.hop] if self.hop else [])]

    def first_request(self) -> bool:
        """Send the article's request; print the logs, then its trace(s). Whether it went through."""
        first = self.stack.url("first")
        print(f"GET {first}/ (as the article's browser did)\n")
        try:
            httpx.get(f"{first}/", headers=BROWSER_HEADERS, timeout=10)
        except httpx.HTTPError as exc:
            print(f"error: first did not answer: {type(exc).__name__} {exc}", file=sys.stderr)
        blocks = _first_trace(self.receiver, self.report)
        print("--- service logs ---")
        self.logs.print_new()
        print("--- end of logs ---\n")
        self.report_exits()
        if not blocks:
            print(f"error: no span arrived within {WAIT_FOR_FIRST_TRACE_S:.0f} s (see the logs above)", file=sys.stderr)
            return False
        print("\n\n".join(block.text for block in blocks))
        if not blocks[0].ok:
            print("error: the first request failed: see the logs and the marked tree above", file=sys.stderr)
        return blocks[0].ok

    def follow(self, stop: threading.Event) -> None:
        """Print new log lines, each new trace once ready, and each service that exits, until `stop` is set."""
        first = self.stack.url("first")
        print(
            f"\nSend more:  curl -i {first}/   (or: curl -i -X POST -d '{{\"hi\": 1}}' "
            f"-H 'content-type: application/json' {first}/)"
        )
        print(f"Spans also at http://127.0.0.1:{self.receiver.port}/spans  ·  logs in {self.log_dir}  ·  Ctrl-C stops.")
        while not stop.wait(0.5):
            self.logs.print_new()
            self.report_exits()
            for block in self.report.ready(self.receiver.spans(), time.monotonic()):
                print("\n" + block.text)

    def report_exits(self) -> None:
        """One line for each service that has exited since the last call."""
        for service in self.services:
            code = service.process.poll()
            if code is not None and service.name not in self.exited:
                self.exited.add(service.name)
                print(
                    f"\nerror: {service.name} exited ({_exit(code)}): requests through it fail from now on. "
                    f"Its log: {service.log_path}. Ctrl-C, then make run again.",
                    file=sys.stderr,
                )

    def stop(self) -> None:
        print("\nstopping ...")
        if self.hop is not None:
            self.hop.process.terminate()
            self.hop.process.wait()
        codes = self.stack.stop()
        self.receiver.stop()
        print("stopped: " + ", ".join(f"{name} ({_exit(code)})" for name, code in codes.items()))


def main() -> int:
    args = _arguments()
    # Each line as it is printed, also through a pipe (make run | tee): this is a live report.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    if args.knative_real:
        return knative_real.main(once=args.once, switches=_switches(args))
    try:
        demo = Demo.start(args)
    except StartFailed as failed:
        print(failed, file=sys.stderr)
        return failed.code
    try:
        if not demo.first_request():
            return 1
        if not args.once:
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            demo.follow(stop)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        demo.stop()


def _first_trace(receiver: Receiver, report: TraceReport) -> list[Block]:
    """The first request's trace(s), once ready: whole, or quiet for the report's settle time."""
    deadline = time.monotonic() + WAIT_FOR_FIRST_TRACE_S
    while time.monotonic() < deadline:
        blocks = report.ready(receiver.spans(), time.monotonic())
        if blocks:
            return blocks
        time.sleep(0.1)
    return report.ready(receiver.spans(), time.monotonic(), final=True)


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

    def __init__(self, stack: Stack, hop: Service | None = None, *, verbose: bool = False) -> None:
        # The order a request takes, so each block reads as the next hop.
        services = [stack.services[name] for name in ("first", "broker", "second")]
        if hop is not None:
            services.insert(2, hop)
        self._paths = [s.log_path for s in services if s.log_path]
        self._offsets = dict.fromkeys(self._paths, 0)
        self._verbose = verbose

    def print_new(self) -> None:
        for path in self._paths:
            with path.open("rb") as log:
                log.seek(self._offsets[path])
                text = log.read()
                # A line still being written waits for the next call.
                text = text[: text.rfind(b"\n") + 1]
                self._offsets[path] += len(text)
            lines = text.decode(errors="replace").splitlines()
            kept = [line for line in lines if self._verbose or not _UVICORN_NOISE.search(line)]
            if kept:
                print("\n".join(kept))


if __name__ == "__main__":
    sys.exit(main())
