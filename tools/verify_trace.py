"""`make verify`: checks that one request made one trace through every hop it must pass, in order, reading
the trace from Jaeger. The hops and the check are tools/hops.py.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from tools.hops import HOP_SETS, likely_causes, summary
from tools.jaeger import wait_for_shape
from tools.stack import free_port, wait_healthy
from tools.trace_tree import render


@contextmanager
def port_forward(command: str, timeout: float = 30.0) -> Iterator[str]:
    """Run `command` (with `{port}` replaced by a free local port) and yield the forwarded URL until done."""
    port = free_port()
    argv = shlex.split(command.format(port=port))
    try:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        raise RuntimeError(f"cannot run {argv[0]!r} for the port-forward: {exc}") from None
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(url + "/", timeout, process)
        except (RuntimeError, TimeoutError) as exc:
            process.terminate()
            _, err = process.communicate(timeout=5)
            raise RuntimeError(f"port-forward failed ({exc}): {err.decode(errors='replace').strip()}") from None
        yield url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()


def _trace_id(args: argparse.Namespace) -> str:
    if args.trace_id:
        return str(args.trace_id).strip().lower()
    path = Path(args.trace_id_file)
    if not path.is_file():
        raise SystemExit(f"error: no trace id: {path} does not exist (run `make demo` first, or pass --trace-id)")
    return path.read_text().strip().lower()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hops", choices=sorted(HOP_SETS), default="knative", help="the path the request took")
    ids = parser.add_mutually_exclusive_group(required=True)
    ids.add_argument("--trace-id", help="the 32-hex trace id to check")
    ids.add_argument("--trace-id-file", help="a file holding the trace id (`make demo` writes one)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--query-url", help="Jaeger's query API, e.g. http://127.0.0.1:16686")
    source.add_argument("--port-forward", help="a command that forwards Jaeger's query port to {port} on loopback")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for all spans (default 60)")
    args = parser.parse_args(argv)
    trace_id = _trace_id(args)
    if not re.fullmatch(r"[0-9a-f]{32}", trace_id):
        print(f"error: {trace_id!r} is not a 32-hex trace id", file=sys.stderr)
        return 2
    hops = HOP_SETS[args.hops]
    print(f"checking trace {trace_id}: {summary(hops)}")
    try:
        if args.query_url:
            spans, problems = wait_for_shape(args.query_url, trace_id, hops, args.timeout)
        else:
            with port_forward(args.port_forward) as url:
                spans, problems = wait_for_shape(url, trace_id, hops, args.timeout)
    except (RuntimeError, httpx.HTTPError) as exc:
        print(f"error: cannot read the trace from Jaeger: {exc}", file=sys.stderr)
        return 2
    print(render(spans))
    if problems:
        for problem in problems:
            print(f"FAIL: {problem}", file=sys.stderr)
        causes = likely_causes(spans, hops)
        if causes:
            print("Likely causes:", file=sys.stderr)
            for cause in causes:
                print(f"  - {cause}", file=sys.stderr)
        return 1
    print(f"OK: all {len(hops)} hops in one trace, in order")
    return 0


if __name__ == "__main__":
    sys.exit(main())
