"""`make run`: the whole demo on loopback with no Docker: first -> broker -> second, traced over OTLP.

Starts an OTLP receiver and the three services, sends one request as the article's browser did, prints the
services' logs and the trace as a tree, then keeps everything running until Ctrl-C.

The workshop's switches (docs/workshop.md) change one thing each: --broken (first sends no trace context, the
event's journey splits into two traces), --extension (the event carries its own context), --untraced-hop (a
hop that drops trace headers sits between the broker and second), --zero-code (opentelemetry-instrument),
--b3 (B3 headers as well as W3C, as for Knative <= 1.18), --broker-sampling-rate (the broker samples as Knative
does for that tracing-sampling-rate; 0 shows the trace ending at the broker).

With OTEL_EXPORTER_OTLP_ENDPOINT (or the other standard OTEL_EXPORTER_OTLP_* settings) in the environment, the
receiver also passes every span on to that backend, Jaeger for instance; the tree still prints.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import httpx

from tools import knative_real, zero_code
from tools.hops import BROWSER_HEADERS
from tools.otlp_receiver import Receiver, Relay
from tools.run_report import Block, TraceReport
from tools.stack import Service, Stack, free_port, in_use, start_untraced_hop

DEFAULT_PORT = 8080
DEFAULT_OTLP_PORT = 4318
SWITCHES = (
    ("broken", "BROKEN"),
    ("extension", "EXTENSION"),
    ("untraced_hop", "UNTRACED_HOP"),
    ("zero_code", "ZERO_CODE"),
    ("b3", "B3"),
)
"""Each workshop option and the make variable that turns it on (the Makefile's `switch`)."""
B3_PROPAGATORS = "b3multi_strict,tracecontext_strict,baggage"
"""B3 as well as W3C: b3multi first, since on the way in the last propagator that finds a context wins, so W3C
wins when a caller sends both (Knative >= 1.19's Eventing passes old x-b3-* headers through unchanged)."""
WAIT_FOR_FIRST_TRACE_S = 10.0
# uvicorn's life-cycle lines: four per service at start, four at stop, the same every time. --verbose keeps them.
_UVICORN_NOISE = re.compile(
    r"\bINFO\b.*(Started server process|Waiting for application (startup|shutdown)\.|"
    r"Application (startup|shutdown) complete\.|Uvicorn running on|Shutting down|Finished server process)"
)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="first's port (second +1, broker +2)")
    parser.add_argument(
        "--otlp-port",
        type=int,
        help=f"the OTLP/HTTP receiver's port ({DEFAULT_OTLP_PORT}; a free one when OTEL_EXPORTER_OTLP_ENDPOINT is set)",
    )
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
        "--b3", action="store_true", help=f"B3 headers as well as W3C (OTEL_PROPAGATORS={B3_PROPAGATORS})"
    )
    parser.add_argument(
        "--broker-sampling-rate",
        type=_rate,
        metavar="RATE",
        help="the broker samples as Knative >= 1.19 does for this tracing-sampling-rate (0: nothing)",
    )
    parser.add_argument(
        "--knative-real", action="store_true", help="Knative's real queue-proxy and broker (tools/knative_real.py)"
    )
    return parser.parse_args()


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: a sampling rate is a number from 0 to 1, as Knative's")
    return rate


def knative_sampler(rate: float) -> dict[str, str]:
    """The standard OTEL_TRACES_SAMPLER settings for the sampler Knative >= 1.19 builds from its
    tracing-sampling-rate (knative/pkg observability/tracing/provider.go, sampleFor): 1 or more samples every span
    whatever the parent says, 0 (or a missing key, which reads as 0) samples none, not even under a sampled
    parent; only a rate in between follows the parent, and samples that share of new traces."""
    if rate >= 1.0:
        return {"OTEL_TRACES_SAMPLER": "always_on"}
    if rate <= 0.0:
        return {"OTEL_TRACES_SAMPLER": "always_off"}
    return {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(rate)}


def _backend(args: argparse.Namespace) -> Relay | None:
    """The user's own OTLP backend, from the standard OTEL_EXPORTER_OTLP_* settings, which the receiver passes the
    spans on to. Those settings are taken out of the environment the services inherit: the services always export
    to make run's receiver, over OTLP/HTTP, so the tree prints whatever the backend does."""
    try:
        relay = Relay.from_environment(os.environ)
    except ValueError as exc:
        raise StartFailed(f"error: {exc}", 2) from None
    for key in [k for k in os.environ if k.startswith("OTEL_EXPORTER_OTLP_")]:
        del os.environ[key]
    if args.otlp_port is None:
        # A backend on this machine most likely listens on 4318 itself (Jaeger, a Collector).
        args.otlp_port = free_port() if relay else DEFAULT_OTLP_PORT
    return relay


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
    if args.broker_sampling_rate is not None:
        words.append(f"SAMPLING={args.broker_sampling_rate:g}")
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
    if args.broker_sampling_rate is not None:
        hop.update(knative_sampler(args.broker_sampling_rate))
    return Stack(
        otlp_endpoint=otlp_endpoint,
        # A short batch delay so the tree appears at once; the default 5 s is for production.
        env={
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            **(zero_code.ENV if args.zero_code else {}),
            **({"OTEL_PROPAGATORS": B3_PROPAGATORS} if args.b3 else {}),
        },
        service_env={"first": first_env, "broker": hop},
        ports={"first": args.port, "second": args.port + 1, "broker": args.port + 2},
        log_dir=log_dir,
        launcher=zero_code.LAUNCHER if args.zero_code else (),
        own_process_group=True,
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
        relay = _backend(args)
        busy = busy_ports(args)
        try:
            if busy:
                raise StartFailed(busy, 2)
            try:
                receiver = Receiver(port=args.otlp_port, relay=relay).start()
            except OSError:  # taken since the check
                raise StartFailed(str(busy_ports(args, {"the OTLP receiver": args.otlp_port})), 2) from None
        except StartFailed:
            if relay is not None:
                relay.close()
            raise
        log_dir = Path(tempfile.mkdtemp(prefix="knative-tracing-"))
        demo = cls(args, receiver, _stack(args, receiver.endpoint, log_dir), log_dir)
        print(f"starting second, broker, first on 127.0.0.1:{args.port + 1}, {args.port + 2}, {args.port} ...")
        for switch in _switches(args):
            print(f"  {switch}")
        if relay is not None:
            print(f"  spans also go to {relay.url} ({relay.setting})")
        try:
            demo.stack.start()
            if args.untraced_hop:
                demo.hop = start_untraced_hop(
                    args.port + 3, demo.stack.url("second"), log_dir / "untraced-hop.log", own_process_group=True
                )
        except RuntimeError as exc:
            demo.stop(quiet=True)
            if "address already in use" in str(exc):  # taken since the check
                raise StartFailed(str(busy_ports(args)), 2) from None
            raise StartFailed(f"error: {exc}", 1) from None
        except BaseException:  # Ctrl-C, SIGTERM or SIGHUP while starting: nothing may be left behind
            demo.stop(quiet=True)
            raise
        demo.logs = LogTail(demo.stack, demo.hop, verbose=args.verbose)
        return demo

    @property
    def services(self) -> list[Service]:
        return [*self.stack.services.values(), *([self.hop] if self.hop else [])]

    def first_request(self) -> bool:
        """Send the article's request; print the logs, then its trace(s). Whether it went through."""
        first = self.stack.url("first")
        print(f"GET {first}/ (as the article's browser did)\n")
        event_id = ""
        try:
            event_id = str(httpx.get(f"{first}/", headers=BROWSER_HEADERS, timeout=10).json().get("event_id", ""))
        except (httpx.HTTPError, ValueError) as exc:
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
        if self.args.broker_sampling_rate == 0:
            # The lesson: the trace stops at the broker, the event does not. Its proof is second's log.
            reached = bool(event_id) and f"processed event {event_id}" in self.stack.services["second"].log()
            print(_SAMPLING_LESSON.format(reached="did reach" if reached else "did NOT reach"))
            return reached
        if not blocks[0].ok:
            print("error: the first request failed: see the logs and the marked tree above", file=sys.stderr)
        return blocks[0].ok

    def follow(self) -> None:
        """Print new log lines, each new trace once ready, and each service that exits, until interrupted."""
        first = self.stack.url("first")
        print(
            f"\nSend more:  curl -i {first}/   (or: curl -i -X POST -d '{{\"hi\": 1}}' "
            f"-H 'content-type: application/json' {first}/)"
        )
        print(f"Spans also at http://127.0.0.1:{self.receiver.port}/spans  ·  logs in {self.log_dir}  ·  Ctrl-C stops.")
        while True:
            time.sleep(0.5)
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

    def stop(self, *, quiet: bool = False) -> None:
        """Stop everything make run started and remove its log folder. A second Ctrl-C does not cut this short:
        each service gets its graceful shutdown (bounded by Stack.stop), so none is left running."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        if not quiet:
            print("\nstopping ...")
        codes: dict[str, int | None] = {}
        if self.hop is not None:
            self.hop.process.terminate()
            codes[self.hop.name] = self.hop.process.wait()
        codes = {**self.stack.stop(), **codes}
        self.receiver.stop()
        shutil.rmtree(self.log_dir, ignore_errors=True)
        if quiet:
            return
        print("stopped: " + ", ".join(f"{name} ({_exit(code)})" for name, code in codes.items()))
        relay = self.receiver.relay
        if relay is not None:
            lost = f", {relay.failed} not ({relay.first_error})" if relay.failed else ""
            print(f"passed {relay.sent} export requests on to {relay.url}{lost}")


def main() -> int:
    args = _arguments()
    # Each line as it is printed, also through a pipe (make run | tee): this is a live report.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    # SIGTERM and a closed terminal stop make run as Ctrl-C does: the services run in process groups of their
    # own (so the terminal's Ctrl-C reaches only make run, which stops each one the same way), and only make run
    # can stop them.
    for signum in STOP_SIGNALS:
        signal.signal(signum, _interrupt)
    if args.knative_real:
        return knative_real.main(once=args.once, switches=_switches(args))
    try:
        demo = Demo.start(args)
    except StartFailed as failed:
        print(failed, file=sys.stderr)
        return failed.code
    except KeyboardInterrupt:
        return 0
    try:
        if not demo.first_request():
            return 1
        if not args.once:
            demo.follow()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        demo.stop()


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _first_trace(receiver: Receiver, report: TraceReport) -> list[Block]:
    """The first request's trace(s), once ready: whole, or quiet for the report's settle time."""
    deadline = time.monotonic() + WAIT_FOR_FIRST_TRACE_S
    while time.monotonic() < deadline:
        blocks = report.ready(receiver.spans(), time.monotonic())
        if blocks:
            return blocks
        time.sleep(0.1)
    return report.ready(receiver.spans(), time.monotonic(), final=True)


_SAMPLING_LESSON = """
Why the trace ends at the broker: the broker sampled as Knative >= 1.19 does with tracing-sampling-rate 0 (a
missing key reads the same): NeverSample, which is not parent-based. It recorded none of its spans, yet passed
the context on with the sampled flag off (traceparent ...-00). second's sampler follows its parent
(parentbased_always_on, the default), so it recorded nothing either, though its log lines above carry the same
trace id. The FAILED line is the trace's view: the event {reached} second (its "processed event" log line).
On a cluster: tracing-sampling-rate "1" in config-observability, then restart the components that read it
(make cluster does both); make verify checks the value and names this cause (docs/knative.md)."""


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
    if args.b3:
        lines.append(f"all three: OTEL_PROPAGATORS={B3_PROPAGATORS} (B3 headers as well as W3C)")
    if args.broker_sampling_rate is not None:
        settings = " ".join(f"{k}={v}" for k, v in knative_sampler(args.broker_sampling_rate).items())
        lines.append(f"broker: {settings} (Knative's sampler for tracing-sampling-rate {args.broker_sampling_rate:g})")
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
