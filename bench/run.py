"""`make bench`: what tracing costs, measured side by side with the same stack untraced and with a bare floor.

Variants of the chain first -> broker -> second, run in alternation (A/B/C..., then ...C/B/A) so a noisy
machine moves them all alike:
- untraced: the demo with `OTEL_SDK_DISABLED=true` (the incoming trace context is still passed on);
- traced: the demo exporting every span over OTLP/HTTP to a receiver this process runs;
- bare: three raw-ASGI uvicorn processes (bench/bare_chain.py), the floor of this server stack;
and the layers between them (bench/layers.py), each switching one more part of OpenTelemetry on: `off` (SDK
disabled, `OTEL_PROPAGATORS=none`), then untraced (+ propagation), `recorded` (+ spans, not exported),
`exported` (+ the batch processor and OTLP exporter, no log correlation), then traced (+ log correlation).

Each run measures cold start (process start to the first 200 on /healthz, each service started alone as
Knative starts a pod; then the first request through the chain), throughput and latency at a fixed
concurrency, CPU per request, resident memory after warm-up and after the load, and for traced runs the
spans the services ended (each logs its count on shutdown) against the spans the receiver got.
It prints a table of medians with the traced/untraced and traced/bare ratios, the breakdown by layer, and writes
all numbers as JSON with a chart (bench/chart.py) beside it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench import chart, layers, profile
from bench.load import LoadResult, pick_generator, run_load
from bench.proc_stats import cpu_seconds, rss_mb
from tools.otlp_receiver import Receiver
from tools.stack import ROOT, SERVICES, Service, Stack, address_in_use, free_port, start_service

VARIANTS: tuple[str, ...] = (*layers.VARIANTS, "bare")
"""untraced, traced and bare, with the layer variants between (bench/layers.py), in the order of a round."""
COMPARED = ("untraced", "traced", "bare")
"""The main table's columns."""
COLD_STARTS = frozenset({"untraced", "traced", "bare", "library"})
"""The variants whose cold start is measured `--cold-starts` times; the layer variants start once (their cost
under load is what they are for), which keeps a default run to about five minutes."""
LIBRARY_VARIANTS = ("traced", "library")
"""`--library WHAT`: the demo as it is against the demo with the library's own part in place of a plug-in of
plugins/, to decide which plug-in keeps its place. Each is only configuration: the standard variable that chose the
plug-in names the stock part instead."""
LIBRARY_ENV: dict[str, dict[str, str]] = {
    "propagators": {"OTEL_PROPAGATORS": "tracecontext,baggage"},
    "exporter": {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
}
RESULTS = ROOT / "bench" / "results"
DEFAULT_OUT = RESULTS / "last-run.json"
"""Untracked (.gitignore): a run changes nothing in git unless it is asked to (--save-reference)."""
REFERENCE = RESULTS / "latest.json"
"""The committed reference run that docs/bench.md and the README quote."""
PORT_ATTEMPTS = 3
HOPS_WAITED = ("first", "broker")
"""The services a request waits for: the broker answers 202 once the event is queued and delivers to second
afterwards. The latency tracing adds, per hop, is the end-to-end difference divided among them."""
_SPANS_ENDED = re.compile(r"telemetry: (\d+) spans exported")
_QUEUE_FULL = "Queue full, dropping"

GOALS = {
    "traced_vs_untraced_rps": (">=", 0.85),
    "traced_vs_untraced_cpu": ("<=", 1.18),
    "added_p99_ms_per_hop": ("<=", 4.0),
    "traced_vs_bare_rps": (">=", 0.70),
    "traced_vs_untraced_cold_start": ("<=", 1.25),
    "dropped_spans": ("<=", 0),
    "max_rss_after_load_mb": ("<=", 64.0),
}
NOISY = ("traced_vs_untraced_rps", "traced_vs_untraced_cpu")
"""The paired ratios whose spread over rounds the bench states, and warns about when it exceeds the effect."""


@dataclass(frozen=True)
class Settings:
    rounds: int
    concurrency: int
    duration: float
    warmup: float
    generator: str
    cold_starts: int = 3
    """Starts of each service per run; its cold-start numbers are their median (one start is too noisy)."""
    profile_dir: Path | None = None
    library: str = ""
    """`--library`: which plug-ins the library's own parts replace (LIBRARY_ENV: propagators, exporter)."""
    """When set, py-spy samples every service during round 1's measured load into this folder."""


@dataclass
class Run:
    variant: str
    round: int
    healthz_s: dict[str, float]
    """Per service: its process start to its first 200 on /healthz, started alone (median of the starts)."""
    startup_cpu_s: dict[str, float]
    """Per service: the CPU time it had used by then (what other work on the machine cannot inflate)."""
    first_request_s: float
    """first's process start to the first 200 on `GET /` through the whole chain."""
    first_request_ms: float
    """The latency of that first (cold) request alone."""
    load: LoadResult = field(default_factory=lambda: LoadResult(0, 0, 0, 0.0, 0.0, 0.0, 0.0))
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)
    bench_cpu_ms_per_request: float = 0.0
    """This process during the load: the OTLP receiver decoding spans (traced runs), otherwise idle."""
    rss_after_warmup_mb: dict[str, float] = field(default_factory=dict)
    rss_after_load_mb: dict[str, float] = field(default_factory=dict)
    loadavg: float = 0.0
    """The machine's 1-minute load average as the run began: other work on the machine skews the numbers."""
    spans_ended: int | None = None
    spans_received: int | None = None
    queue_full_warnings: int | None = None
    dropped_by_service: dict[str, int] = field(default_factory=dict)
    """Spans a service ended that the receiver never got (a traced run whose counts are known)."""
    exit_codes: dict[str, int | None] = field(default_factory=dict)


def _status(url: str, timeout: float) -> int | None:
    """The HTTP status of `GET url`, or None when nothing answers: http.client, as cheap as a poll can be."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", "/" + path)
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()


def _wait_200(service: Service, path: str, timeout: float, since: float) -> float:
    """Poll until `service` answers 200 on `path`; the seconds since `since`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited with {service.process.returncode}:\n{service.log()}")
        if _status(service.url + path, timeout=2.0) == 200:
            return time.monotonic() - since
        time.sleep(0.005)
    raise RuntimeError(f"Timed out after {timeout:.0f}s waiting for: {service.url}{path} to answer 200")


def _bare_env(name: str, ports: dict[str, int]) -> dict[str, str]:
    downstream = {"first": "broker", "broker": "second"}.get(name)
    env = {"BARE_NEXT": f"http://127.0.0.1:{ports[downstream]}/" if downstream else ""}
    if name == "broker":
        env["BARE_BACKGROUND"] = "true"
    return env


def _cold_start(
    stack: Stack, name: str, env: dict[str, str], log_path: Path, command: list[str] | None
) -> tuple[float, Service]:
    """Start `name` and wait for its first 200 on /healthz; the seconds that took. A service is started again on
    the same port for each cold start: if another process took the port meanwhile, start it on a new one (none
    of its callers has started yet), so the run is not lost."""
    for _ in range(PORT_ATTEMPTS):
        launched = time.monotonic()
        service = start_service(name, stack.ports[name], env, log_path, command=command)
        stack.services[name] = service
        try:
            return _wait_200(service, "/healthz", 30.0, launched), service
        except RuntimeError:
            if not address_in_use(service):
                raise
        print(f"    {name}: port {stack.ports[name]} was taken meanwhile; starting it on another")
        stack.ports[name] = free_port()
    raise RuntimeError(f"{name}: its port was taken {PORT_ATTEMPTS} times in a row")


def _start(variant: str, settings: Settings, receiver: Receiver | None, log_dir: Path) -> tuple[Stack, Run]:
    """Start the three processes one at a time, downstream first (each alone, as Knative starts a pod), then
    send the first request through the chain; the cold-start part of the run."""
    # Traced runs keep every OTEL_BSP_* default: the bench measures the configuration users get.
    stack = Stack(
        otlp_endpoint=receiver.endpoint if receiver else None, env=dict(layers.ENV.get(variant, {})), log_dir=log_dir
    )
    healthz: dict[str, float] = {}
    startup_cpu: dict[str, float] = {}
    try:
        for name in SERVICES:
            log_path = log_dir / f"{name}.log"
            if variant == "bare":
                ports = {n: stack.ports.setdefault(n, free_port()) for n in SERVICES}
                env, command = _bare_env(name, ports), [sys.executable, "-m", "bench.bare_chain"]
            elif variant == "library":
                parts = [part.strip() for part in settings.library.split(",") if part.strip()]
                env = {**stack.environment(name)}
                for part in parts:
                    env.update(LIBRARY_ENV[part])
                command = None
            else:
                env, command = stack.environment(name), None
            times: list[tuple[float, float]] = []
            starts = settings.cold_starts if variant in COLD_STARTS else 1
            for attempt in range(starts):
                took, service = _cold_start(stack, name, env, log_path, command)
                times.append((took, cpu_seconds(service.process.pid)))
                if attempt < starts - 1:
                    service.process.terminate()
                    service.process.wait(15)
            healthz[name] = statistics.median(t for t, _ in times)
            startup_cpu[name] = statistics.median(c for _, c in times)
        # `first` was started last: its start to the answer of the first request through the chain.
        sent = time.monotonic()
        status = _status(stack.url("first") + "/", timeout=10.0)
        answered = time.monotonic()
        if status != 200:
            raise RuntimeError(f"{variant}: the first request answered {status}:\n{stack.services['first'].log()}")
    except BaseException:
        stack.stop()
        raise
    cold = Run(
        variant=variant,
        round=0,
        healthz_s=healthz,
        startup_cpu_s=startup_cpu,
        first_request_s=answered - sent + healthz["first"],
        first_request_ms=(answered - sent) * 1e3,
    )
    return stack, cold


def _one_run(variant: str, round_number: int, settings: Settings, log_root: Path) -> Run:
    log_dir = log_root / f"{round_number}-{variant}"
    log_dir.mkdir()
    receiver = Receiver().start() if variant in layers.EXPORTING else None
    loadavg = float(Path("/proc/loadavg").read_text().split()[0])
    try:
        stack, run = _start(variant, settings, receiver, log_dir)
        run.round = round_number
        run.loadavg = loadavg
        try:
            _load(run, settings, stack)
        finally:
            run.exit_codes = stack.stop()
        if receiver is not None:
            # Each service flushes its spans on SIGTERM before it exits, so all have arrived by now.
            logs = [service.log() for service in stack.services.values()]
            counts = [int(n) for text in logs for n in _SPANS_ENDED.findall(text)]
            # No count logged (a service that crashed, or code without common/tracing/setup.py's counter): unknown.
            run.spans_ended = sum(counts) if len(counts) == len(logs) else None
            run.spans_received = len(receiver.spans())
            run.queue_full_warnings = sum(text.count(_QUEUE_FULL) for text in logs)
            if run.spans_ended is not None:
                run.dropped_by_service = _dropped_by_service(stack, receiver)
        return run
    finally:
        if receiver is not None:
            receiver.stop()


def _dropped_by_service(stack: Stack, receiver: Receiver) -> dict[str, int]:
    received: dict[str, int] = {}
    for span in receiver.spans():
        received[span.service] = received.get(span.service, 0) + 1
    dropped = {}
    for name, service in stack.services.items():
        ended = sum(int(n) for n in _SPANS_ENDED.findall(service.log()))
        dropped[name] = ended - received.get(name, 0)
    return dropped


def _load(run: Run, settings: Settings, stack: Stack) -> None:
    url = stack.url("first") + "/"
    pids = {name: service.process.pid for name, service in stack.services.items()}
    if settings.warmup > 0:
        run_load(settings.generator, url, settings.concurrency, settings.warmup)
    run.rss_after_warmup_mb = {name: rss_mb(pid) for name, pid in pids.items()}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    bench_before = cpu_seconds(os.getpid())
    profilers = []
    if settings.profile_dir is not None and run.round == 1:
        settings.profile_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in pids.items():
            out = settings.profile_dir / f"{run.variant}-{name}.txt"
            profilers.append(profile.start(pid, settings.duration, out))
    run.load = run_load(settings.generator, url, settings.concurrency, settings.duration)
    for profiler in profilers:
        if profiler is not None:
            profiler.wait(30)
    requests = max(run.load.requests, 1)
    run.bench_cpu_ms_per_request = (cpu_seconds(os.getpid()) - bench_before) * 1e3 / requests
    run.cpu_ms_per_request = {
        name: (cpu_seconds(pid) - cpu_before[name]) * 1e3 / requests for name, pid in pids.items()
    }
    run.rss_after_load_mb = {name: rss_mb(pid) for name, pid in pids.items()}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarize(runs: list[Run]) -> dict[str, Any]:
    """Per variant: medians over the rounds of every number, and span totals for the traced runs."""
    summary: dict[str, Any] = {}
    for variant in (*VARIANTS, *(v for v in LIBRARY_VARIANTS if v not in VARIANTS)):
        mine = [r for r in runs if r.variant == variant]
        if not mine:
            continue
        entry: dict[str, Any] = {
            "runs": len(mine),
            "requests": sum(r.load.requests for r in mine),
            "non_2xx": sum(r.load.non_2xx for r in mine),
            "errors": sum(r.load.errors for r in mine),
            "rps": _median([r.load.rps for r in mine]),
            "p50_ms": _median([r.load.p50_ms for r in mine]),
            "p90_ms": _median([r.load.p90_ms for r in mine]),
            "p99_ms": _median([r.load.p99_ms for r in mine]),
            "first_request_s": _median([r.first_request_s for r in mine]),
            "first_request_ms": _median([r.first_request_ms for r in mine]),
            "cpu_ms_per_request_total": _median([sum(r.cpu_ms_per_request.values()) for r in mine]),
            "bench_cpu_ms_per_request": _median([r.bench_cpu_ms_per_request for r in mine]),
            "loadavg": _median([r.loadavg for r in mine]),
        }
        for metric in ("healthz_s", "startup_cpu_s", "cpu_ms_per_request", "rss_after_warmup_mb", "rss_after_load_mb"):
            entry[metric] = {name: _median([getattr(r, metric)[name] for r in mine]) for name in SERVICES}
        if variant in layers.EXPORTING:
            known = all(r.spans_ended is not None for r in mine)
            ended = sum(r.spans_ended or 0 for r in mine)
            received = sum(r.spans_received or 0 for r in mine)
            entry["spans_ended"] = ended if known else None
            entry["spans_received"] = received
            entry["spans_dropped"] = ended - received if known else None
            entry["queue_full_warnings"] = sum(r.queue_full_warnings or 0 for r in mine)
            entry["spans_dropped_by_service"] = {
                name: sum(r.dropped_by_service.get(name, 0) for r in mine) for name in SERVICES
            }
        summary[variant] = entry
    return summary


def _per_round(runs: list[Run], numerator: str, denominator: str, value: Any) -> list[float]:
    """value(numerator run) / value(denominator run) for each round that has both."""
    ratios = []
    for number in sorted({r.round for r in runs}):
        by_variant = {r.variant: r for r in runs if r.round == number}
        if numerator in by_variant and denominator in by_variant and value(by_variant[denominator]):
            ratios.append(value(by_variant[numerator]) / value(by_variant[denominator]))
    return ratios


def _paired(runs: list[Run], numerator: str, denominator: str, value: Any) -> float:
    """Median over rounds of value(numerator run) / value(denominator run) from the same round."""
    return _median(_per_round(runs, numerator, denominator, value))


def noise(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Each NOISY ratio per round, its spread (max - min) and the effect it is read as (|median - 1|): a spread
    larger than the effect means the rounds disagree more than the difference being claimed."""
    picks = {
        "traced_vs_untraced_rps": lambda r: r.load.rps,
        "traced_vs_untraced_cpu": lambda r: sum(r.cpu_ms_per_request.values()),
    }
    found = {}
    for name in NOISY:
        rounds = _per_round(runs, "traced", "untraced", picks[name])
        if rounds:
            spread, effect = max(rounds) - min(rounds), abs(_median(rounds) - 1)
            found[name] = {"rounds": rounds, "spread": spread, "effect": effect, "too_noisy": spread > effect}
    return found


def ratios(runs: list[Run]) -> dict[str, float]:
    """Traced against untraced and against the bare floor, each paired within its round, then the median."""
    result = {
        "library_vs_traced_rps": _paired(runs, "library", "traced", lambda r: r.load.rps),
        "library_vs_traced_cpu": _paired(runs, "library", "traced", lambda r: sum(r.cpu_ms_per_request.values())),
        "library_vs_traced_p50": _paired(runs, "library", "traced", lambda r: r.load.p50_ms),
        "traced_vs_untraced_rps": _paired(runs, "traced", "untraced", lambda r: r.load.rps),
        "traced_vs_bare_rps": _paired(runs, "traced", "bare", lambda r: r.load.rps),
        "untraced_vs_bare_rps": _paired(runs, "untraced", "bare", lambda r: r.load.rps),
        "traced_vs_untraced_p50": _paired(runs, "traced", "untraced", lambda r: r.load.p50_ms),
        "traced_vs_untraced_p99": _paired(runs, "traced", "untraced", lambda r: r.load.p99_ms),
        "traced_vs_untraced_first_request": _paired(runs, "traced", "untraced", lambda r: r.first_request_s),
        # CPU time per request of the three processes together: the cost of tracing with other work on the
        # machine taken out, as far as CPU time can take it out (it still counts cache and frequency effects).
        "traced_vs_untraced_cpu": _paired(runs, "traced", "untraced", lambda r: sum(r.cpu_ms_per_request.values())),
        "traced_vs_bare_cpu": _paired(runs, "traced", "bare", lambda r: sum(r.cpu_ms_per_request.values())),
    }
    for name in SERVICES:
        result[f"traced_vs_untraced_healthz_{name}"] = _paired(
            runs, "traced", "untraced", lambda r, name=name: r.healthz_s[name]
        )
        result[f"traced_vs_untraced_startup_cpu_{name}"] = _paired(
            runs, "traced", "untraced", lambda r, name=name: r.startup_cpu_s[name]
        )
    # The goal: the three services' cold starts together (a Knative scale from zero of the whole chain), traced
    # against untraced in the same round. Each service's own ratio is kept above; the worst of those four
    # noisy ratios would measure the noise more than the services.
    result["traced_vs_untraced_cold_start"] = _paired(runs, "traced", "untraced", lambda r: sum(r.healthz_s.values()))
    result["traced_vs_untraced_startup_cpu"] = max(result[f"traced_vs_untraced_startup_cpu_{n}"] for n in SERVICES)
    return result


def goals(summary: dict[str, Any], ratio: dict[str, float]) -> dict[str, dict[str, Any]]:
    traced = summary.get("traced", {})
    values: dict[str, float] = {
        "traced_vs_untraced_rps": ratio["traced_vs_untraced_rps"],
        "traced_vs_bare_rps": ratio["traced_vs_bare_rps"],
        "traced_vs_untraced_cold_start": ratio["traced_vs_untraced_cold_start"],
        "traced_vs_untraced_cpu": ratio["traced_vs_untraced_cpu"],
        "added_p99_ms_per_hop": (
            (traced["p99_ms"] - summary["untraced"]["p99_ms"]) / len(HOPS_WAITED)
            if traced and "untraced" in summary
            else float("inf")
        ),
        # Unknown counts a failure: a bench that cannot count its spans has not shown that none were lost.
        "dropped_spans": traced.get("spans_dropped") if traced.get("spans_dropped") is not None else float("inf"),
        # The demo's services, traced or not; the bare floor is not the demo.
        "max_rss_after_load_mb": max(
            (max(summary[v]["rss_after_load_mb"].values()) for v in ("untraced", "traced") if v in summary),
            default=0.0,
        ),
    }
    result = {}
    for name, (op, target) in GOALS.items():
        value = values[name]
        met = value >= target if op == ">=" else value <= target
        result[name] = {"value": value, "target": f"{op} {target}", "met": met}
    return result


def machine() -> dict[str, Any]:
    cpu_model = "unknown"
    memory_gb = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": round(memory_gb, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _row(label: str, values: list[float | None], fmt: str) -> str:
    cells = ["-" if v is None else format(v, fmt) for v in values]
    return f"{label:<34}" + "".join(f"{cell:>12}" for cell in cells)


def table(summary: dict[str, Any], ratio: dict[str, float]) -> str:
    """The medians side by side, with traced/untraced and traced/bare."""
    u, t, b = (summary.get(v, {}) for v in ("untraced", "traced", "bare"))

    def row(label: str, pick: Any, fmt: str = ".1f") -> str:
        values = [pick(x) if x else None for x in (u, t, b)]
        over = [values[1] / values[0] if values[0] and values[1] is not None else None]
        over.append(values[1] / values[2] if values[2] and values[1] is not None else None)
        # Ratios always with two decimals: 0.70 and 0.26 are not "1" and "0".
        return _row(label, values, fmt) + "".join(f"{'-' if v is None else format(v, '.2f'):>12}" for v in over)

    lines = [
        _row("", [], "") + "".join(f"{h:>12}" for h in ("untraced", "traced", "bare", "tr/untr", "tr/bare")),
        row("throughput (req/s)", lambda x: x["rps"], ".0f"),
        row("latency p50 (ms)", lambda x: x["p50_ms"], ".2f"),
        row("latency p90 (ms)", lambda x: x["p90_ms"], ".2f"),
        row("latency p99 (ms)", lambda x: x["p99_ms"], ".2f"),
    ]
    for name in SERVICES:
        lines.append(row(f"cold start {name} to /healthz (s)", lambda x, n=name: x["healthz_s"][n], ".3f"))
    for name in SERVICES:
        lines.append(row(f"start-up CPU {name} (s)", lambda x, n=name: x["startup_cpu_s"][n], ".3f"))
    lines.append(row("first start to 1st request (s)", lambda x: x["first_request_s"], ".3f"))
    lines.append(row("1st request latency (ms)", lambda x: x["first_request_ms"], ".1f"))
    for name in SERVICES:
        lines.append(row(f"CPU {name} (ms/request)", lambda x, n=name: x["cpu_ms_per_request"][n], ".3f"))
    lines.append(row("CPU all three (ms/request)", lambda x: x["cpu_ms_per_request_total"], ".3f"))
    lines.append(row("CPU OTLP receiver (ms/request)", lambda x: x["bench_cpu_ms_per_request"], ".3f"))
    for name in SERVICES:
        lines.append(row(f"RSS {name} after warm-up (MB)", lambda x, n=name: x["rss_after_warmup_mb"][n], ".1f"))
        lines.append(row(f"RSS {name} after load (MB)", lambda x, n=name: x["rss_after_load_mb"][n], ".1f"))
    if t:
        lines.append(
            f"spans (traced): ended {t['spans_ended']}, received {t['spans_received']}, "
            f"dropped {t['spans_dropped']}, queue-full warnings {t['queue_full_warnings']}"
        )
    lines.append(
        "paired ratios (median of per-round ratios): "
        + (", ".join(f"{k}={v:.2f}" for k, v in ratio.items() if v and k.endswith(("rps", "cold_start", "cpu"))) or "-")
    )
    lines.append(
        "machine load average (1 min) at the runs' start: "
        + ", ".join(f"{v} {summary[v]['loadavg']:.2f}" for v in VARIANTS if v in summary)
    )
    return "\n".join(lines)


def order(round_number: int) -> tuple[str, ...]:
    """A/B/C then C/B/A: alternating, so a trend in the machine's load does not favour one variant."""
    return VARIANTS if round_number % 2 else tuple(reversed(VARIANTS))


def arguments() -> argparse.ArgumentParser:
    """bench/run.py's options (BENCH_FLAGS); docs/bench.md's commands are checked against them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of untraced/traced/bare (default 3)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections kept busy (default 8)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of measured load per run (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load first (default 2)")
    parser.add_argument("--generator", choices=("auto", "wrk", "hey", "python"), default="auto")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {_shown(DEFAULT_OUT)}, untracked)"
    )
    parser.add_argument(
        "--save-reference",
        action="store_true",
        help=f"also write a complete run to {_shown(REFERENCE)}, the committed reference run",
    )
    parser.add_argument("--cold-starts", type=int, default=3, help="starts of each service per run (default 3)")
    parser.add_argument("--quick", action="store_true", help="one short round: checks the bench, measures little")
    parser.add_argument(
        "--library",
        metavar="WHAT",
        help="traced against the library's own WHAT instead (propagators, exporter; comma-separated)",
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="py-spy profiles of round 1 into DIR (slows that round)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = arguments()
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup, args.cold_starts = 1, 1.0, 0.0, 1
    if min(args.rounds, args.concurrency, args.cold_starts) < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rounds, --concurrency and --cold-starts must be >= 1, --duration > 0, --warmup >= 0")
    settings = Settings(
        rounds=args.rounds,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        generator=pick_generator(args.generator),
        cold_starts=args.cold_starts,
        profile_dir=args.profile,
        library=args.library or "",
    )
    unknown = {part.strip() for part in settings.library.split(",") if part.strip()} - set(LIBRARY_ENV)
    if unknown:
        parser.error(f"--library: unknown {sorted(unknown)}; choose from {', '.join(LIBRARY_ENV)}")
    if settings.library:
        global VARIANTS  # noqa: PLW0603 - the one run-wide choice of what is compared
        VARIANTS = LIBRARY_VARIANTS
    print(opening(settings, quick=args.quick))
    runs: list[Run] = []
    started = datetime.now(UTC).isoformat(timespec="seconds")
    failure = None
    with TemporaryDirectory(prefix="bench-") as tmp:
        try:
            for number in range(1, settings.rounds + 1):
                for variant in order(number):
                    run = _one_run(variant, number, settings, Path(tmp))
                    runs.append(run)
                    # Written after every run: a later failure (or Ctrl-C) loses nothing already measured.
                    write(args.out, result(started, settings, runs))
                    print(
                        f"    round {number} {variant:<9} {run.load.rps:8.0f} req/s  p50 {run.load.p50_ms:6.2f} ms  "
                        f"p99 {run.load.p99_ms:6.2f} ms  first /healthz {run.healthz_s['first']:.3f}s"
                    )
        except (RuntimeError, OSError, TimeoutError, KeyboardInterrupt) as exc:
            failure = f"{type(exc).__name__}: {exc}".strip()
    if not runs:
        print(f"error: the first run failed, nothing was measured: {failure}", file=sys.stderr)
        return 1
    final = result(started, settings, runs, failure)
    write(args.out, final)
    print(tables(final, settings, quick=args.quick))
    picture = chart.write(args.out.with_suffix(".svg"), final)
    print(f"==> every number in {_shown(args.out)}, the chart in {_shown(picture)}")
    if settings.profile_dir is not None:
        print(
            f"==> profiles in {settings.profile_dir}; top frames: python -m bench.profile {settings.profile_dir}/*.txt"
        )
    failed = sum(r.load.non_2xx + r.load.errors for r in runs)
    if failed:
        print(f"warning: {failed} requests failed during the load: the numbers above are suspect", file=sys.stderr)
    if failure is not None:
        print(
            f"error: a run failed after {len(runs)} finished (kept in {_shown(args.out)}): {failure}", file=sys.stderr
        )
        return 1
    if args.save_reference:
        write(REFERENCE, final)
        chart.write(REFERENCE.with_suffix(".svg"), final)
        print(
            f"==> saved as the reference run: {_shown(REFERENCE)} and its chart (commit them with docs/bench.md's "
            "numbers)"
        )
    print(
        SMOKE_RUN_DONE if args.quick else conclusion(final["summary"], final["ratios"], final["goals"], final["noise"])
    )
    return 0


def opening(settings: Settings, *, quick: bool) -> str:
    line = (
        f"==> bench: {settings.rounds} round(s) of {', '.join(VARIANTS)}; load generator: {settings.generator}, "
        f"{settings.concurrency} connections, {settings.duration:g}s (+{settings.warmup:g}s warm-up) each"
    )
    return f"{line}\n{SMOKE_RUN}" if quick else line


SMOKE_RUN = (
    "==> --quick is a smoke run: every variant starts, takes load and exports for one short round, which checks the "
    "bench works. Its numbers are noise (a layer can even come out negative), so it prints no layer breakdown, no "
    "goals and no verdict: `make bench` measures (docs/bench.md)."
)
SMOKE_RUN_DONE = "==> smoke run passed: every variant ran and answered. Not a measurement: make bench measures."


def tables(final: dict[str, Any], settings: Settings, *, quick: bool = False) -> str:
    """The numbers as people read them. A quick run shows only what it ran (the medians table, headed as a smoke
    run), not the layer breakdown: one round's differences of differences are noise, often below zero."""
    parts = [table(final["summary"], final["ratios"])]
    if quick:
        return f"smoke run (one {settings.duration:g} s round, not a measurement):\n{parts[0]}"
    if final["breakdown"] is not None:
        parts.append(layers.table(final["breakdown"], {v: s["rps"] for v, s in final["summary"].items()}))
    if settings.library:
        lib, hand, ratio = final["summary"]["library"], final["summary"]["traced"], final["ratios"]
        parts.append(
            f"library ({settings.library}) against hand-made, medians: {lib['rps']:.0f} / {hand['rps']:.0f} req/s, "
            f"CPU {lib['cpu_ms_per_request_total']:.2f} / {hand['cpu_ms_per_request_total']:.2f} ms a request; "
            f"paired ratios: rps {ratio['library_vs_traced_rps']:.3f}, CPU {ratio['library_vs_traced_cpu']:.3f}, "
            f"p50 {ratio['library_vs_traced_p50']:.3f}"
        )
    return "\n".join(parts)


def result(started: str, settings: Settings, runs: list[Run], failure: str | None = None) -> dict[str, Any]:
    """Everything a run of the bench measured, as written to JSON."""
    summary = summarize(runs)
    ratio = ratios(runs)
    return {
        "started": started,
        "machine": machine(),
        "settings": {**asdict(settings), "profile_dir": str(settings.profile_dir or "") or None},
        "summary": summary,
        "ratios": ratio,
        "goals": goals(summary, ratio),
        "noise": noise(runs),
        "breakdown": layers.breakdown(runs),
        "failure": failure,
        "runs": [asdict(r) for r in runs],
    }


def write(path: Path, numbers: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(numbers, indent=2) + "\n")


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def spread(found: dict[str, dict[str, Any]]) -> str:
    """The noise in plain words: each paired ratio's rounds, and a warning where they disagree more than the
    effect the median is read as."""
    lines = []
    for name, n in found.items():
        rounds = ", ".join(f"{r:.3f}" for r in n["rounds"])
        lines.append(f"noise {name}: rounds {rounds}; spread {n['spread']:.3f} against an effect of {n['effect']:.3f}")
        if n["too_noisy"]:
            lines.append(
                f"warning: the rounds of {name} disagree by more than the effect claimed: more rounds, or a quieter "
                "machine, before reading it"
            )
    return "\n".join(lines)


def conclusion(
    summary: dict[str, Any],
    ratio: dict[str, float],
    goal: dict[str, dict[str, Any]],
    found_noise: dict[str, dict[str, Any]] | None = None,
) -> str:
    """The plain words at the end: how much the rounds agree, what tracing costs here, and which goals the numbers
    meet."""
    untraced, traced = summary.get("untraced"), summary.get("traced")
    lines = [spread(found_noise)] if found_noise else []
    for name, g in goal.items():
        lines.append(f"goal {name}: {g['value']:.2f}, target {g['target']}: {'met' if g['met'] else 'not met'}")
    if untraced and traced and ratio["traced_vs_untraced_rps"]:
        cost = (1 - ratio["traced_vs_untraced_rps"]) * 100
        p50, p99 = ((traced[p] - untraced[p]) / len(HOPS_WAITED) for p in ("p50_ms", "p99_ms"))
        met = sum(1 for g in goal.values() if g["met"])
        lines.append(
            f"==> tracing costs {cost:.0f}% of throughput ({traced['rps']:.0f} vs {untraced['rps']:.0f} req/s) and "
            f"adds {p50:.1f} ms at p50, {p99:.1f} ms at p99 per hop ({' and '.join(HOPS_WAITED)}) on this machine; "
            f"{met} of {len(goal)} goals met (docs/bench.md)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
