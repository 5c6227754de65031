"""Load at a fixed concurrency with the best generator installed: `wrk`, else `hey`, else bench.http_load.

Every generator's answer is reduced to one `LoadResult`, so the bench's table does not care which ran.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

from tools.stack import ROOT

GENERATORS = ("wrk", "hey", "python")
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass(frozen=True)
class LoadResult:
    requests: int
    non_2xx: int
    errors: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float


def pick_generator(wanted: str = "auto") -> str:
    """`wanted` if it is installed (`auto`: the first installed of GENERATORS); the Python one always is."""
    if wanted == "python":
        return wanted
    if wanted != "auto":
        if shutil.which(wanted) is None:
            raise SystemExit(f"error: --generator {wanted}: {wanted} is not installed (apt-get install -y {wanted})")
        return wanted
    return next(name for name in GENERATORS if name == "python" or shutil.which(name))


def run_load(generator: str, url: str, concurrency: int, duration: float) -> LoadResult:
    # Bounded: a generator that hangs past its own duration is a failure, not a wait.
    limit = duration + 30
    if generator == "wrk":
        seconds = max(1, round(duration))
        command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", url]
        return parse_wrk(_output(command, limit))
    if generator == "hey":
        command = ["hey", "-z", f"{duration}s", "-c", str(concurrency), url]
        return parse_hey(_output(command, limit), duration)
    command = [
        sys.executable,
        "-m",
        "bench.http_load",
        url,
        f"--concurrency={concurrency}",
        f"--duration={duration}",
    ]
    return LoadResult(**json.loads(_output(command, limit)))


def _output(command: list[str], timeout: float) -> str:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _search(pattern: str, text: str, source: str) -> re.Match[str]:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{source} output has no {pattern!r}:\n{text}")
    return match


def parse_wrk(text: str) -> LoadResult:
    latency = {p: _ms(_search(rf"^\s+{p}%\s+(\S+)$", text, "wrk").group(1)) for p in (50, 90, 99)}
    requests = int(_search(r"^\s+(\d+) requests in", text, "wrk").group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return LoadResult(
        requests=requests,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
        rps=float(_search(r"^Requests/sec:\s+([\d.]+)", text, "wrk").group(1)),
        p50_ms=latency[50],
        p90_ms=latency[90],
        p99_ms=latency[99],
    )


def parse_hey(text: str, duration: float) -> LoadResult:
    latency = {p: float(_search(rf"^\s+{p}%+ in ([\d.]+) secs", text, "hey").group(1)) * 1e3 for p in (50, 90, 99)}
    statuses = [(int(code), int(n)) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)]
    # hey lists errors after the status codes, as `[count]\tmessage` lines.
    error_part = text.partition("Error distribution:")[2]
    return LoadResult(
        requests=sum(n for _, n in statuses),
        non_2xx=sum(n for code, n in statuses if not 200 <= code < 300),
        errors=sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s", error_part, re.MULTILINE)),
        rps=float(_search(r"Requests/sec:\s+([\d.]+)", text, "hey").group(1)),
        p50_ms=latency[50],
        p90_ms=latency[90],
        p99_ms=latency[99],
    )
