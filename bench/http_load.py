"""The load generator the bench falls back to when neither `wrk` nor `hey` is installed.

`python -m bench.http_load URL --concurrency 8 --duration 10` keeps `concurrency` keep-alive HTTP/1.1
connections busy with `GET` for `duration` seconds and prints one JSON object: requests, non-2xx answers,
socket errors, requests per second and latency percentiles. It speaks raw HTTP over asyncio streams, because
a full client library would spend more CPU than the servers it measures on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import uvloop


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    non_2xx: int = 0
    errors: int = 0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (need not be sorted); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _worker(host: str, port: int, request: bytes, deadline: float, tally: Tally) -> None:
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            tally.errors += 1
            await asyncio.sleep(0.01)
            continue
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                tally.latencies.append(time.perf_counter() - started)
                if not 200 <= status < 300:
                    tally.non_2xx += 1
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            tally.errors += 1
        finally:
            writer.close()


async def run(url: str, concurrency: int, duration: float) -> dict[str, float | int]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    tally = Tally()
    started = time.monotonic()
    deadline = started + duration
    await asyncio.gather(*(_worker(host, port, request, deadline, tally) for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    return {
        "requests": len(tally.latencies),
        "non_2xx": tally.non_2xx,
        "errors": tally.errors,
        "rps": len(tally.latencies) / elapsed,
        "p50_ms": percentile(tally.latencies, 0.50) * 1e3,
        "p90_ms": percentile(tally.latencies, 0.90) * 1e3,
        "p99_ms": percentile(tally.latencies, 0.99) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    result = uvloop.run(run(args.url, args.concurrency, args.duration))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
