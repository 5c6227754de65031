"""`make demo`: one request to first on the kind cluster, as the article's browser sent it, through Kourier.

Prints first's answer, the trace id, and where to see the trace; saves the trace id for `make verify`.
The Host header picks the Knative route, so no DNS is needed (the browser URL uses sslip.io, which resolves
`*.127.0.0.1.sslip.io` to 127.0.0.1).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tools.hops import BROWSER_HEADERS

COLD_START = 90.0
"""Default seconds to keep trying: the first request after a deploy or scale-to-zero waits for a pod."""


def send(ingress: str, host: str, deadline: float) -> httpx.Response:
    """GET / on first; retries while the route is not programmed yet (404/503 from Kourier) or not listening."""
    last = ""
    while True:
        try:
            reply = httpx.get(f"{ingress}/", headers={**BROWSER_HEADERS, "host": host}, timeout=60.0)
            if reply.status_code not in (404, 502, 503):
                return reply
            last = f"{reply.status_code} {reply.text[:200]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise RuntimeError(last)
        time.sleep(2.0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ingress", required=True, help="Kourier's address on this machine, e.g. http://127.0.0.1:80")
    parser.add_argument("--host", required=True, help="first's route, e.g. first.default.127.0.0.1.sslip.io")
    parser.add_argument("--trace-id-file", required=True, help="where to save the trace id for `make verify`")
    parser.add_argument("--jaeger-ui", default="http://127.0.0.1:16686", help="Jaeger's UI as `make traces` serves it")
    parser.add_argument("--wait", type=float, default=COLD_START, help="seconds to keep trying (default 90)")
    args = parser.parse_args(argv)
    ingress = args.ingress.rstrip("/")
    port = urlsplit(ingress).port
    browser_url = f"http://{args.host}{'' if port in (None, 80) else f':{port}'}/"
    print(f"GET {browser_url}  (as the article's browser did; sent to {ingress} with Host: {args.host})")
    try:
        reply = send(ingress, args.host, time.monotonic() + args.wait)
    except RuntimeError as exc:
        print(
            f"error: first did not answer through Kourier at {ingress} within {args.wait:.0f}s (last: {exc}).\n"
            "Is the cluster up and deployed (make cluster deploy), and KIND_HTTP_PORT the one the cluster uses?",
            file=sys.stderr,
        )
        return 1
    print(f"first answered {reply.status_code}: {reply.text}")
    is_json = reply.headers.get("content-type", "").startswith("application/json")
    trace_id = reply.json().get("trace_id") if is_json else None
    if reply.status_code != 200 or not trace_id:
        print(
            "error: no trace id in first's answer (see `kubectl logs -l serving.knative.dev/service=first -c first`)",
            file=sys.stderr,
        )
        return 1
    path = Path(args.trace_id_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(trace_id + "\n")
    ui = args.jaeger_ui.rstrip("/")
    print(f"\ntrace id: {trace_id}   (saved in {path})")
    print(f"See it:   make traces, then open {ui}/trace/{trace_id}")
    print("Check it: make verify   (activator -> queue-proxy -> first -> broker -> channel -> trigger -> second)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
