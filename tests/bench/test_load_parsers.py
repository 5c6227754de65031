"""The bench reads wrk's and hey's reports: each parser against the report format its tool prints."""

from __future__ import annotations

import pytest

from bench.http_load import percentile
from bench.load import LoadResult, parse_hey, parse_wrk

WRK = """Running 8s test @ http://127.0.0.1:40001/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.10ms    2.31ms  40.12ms   90.00%
    Req/Sec     1.31k   120.00     1.50k    70.00%
  Latency Distribution
     50%    5.50ms
     75%    6.80ms
     90%    8.20ms
     99%    1.20s
  10480 requests in 8.00s, 3.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   1310.00
Transfer/sec:    396.00KB
"""

HEY = """
Summary:
  Total:\t8.0012 secs
  Slowest:\t0.0400 secs
  Fastest:\t0.0020 secs
  Average:\t0.0061 secs
  Requests/sec:\t1310.0000

Latency distribution:
  10% in 0.0040 secs
  50% in 0.0055 secs
  90% in 0.0082 secs
  99% in 0.0120 secs

Status code distribution:
  [200]\t10476 responses
  [502]\t4 responses

Error distribution:
  [3]\tGet "http://127.0.0.1:40001/": read: connection reset by peer
"""


def test_wrk_report() -> None:
    assert parse_wrk(WRK) == LoadResult(
        requests=10480, non_2xx=4, errors=3, rps=1310.0, p50_ms=5.5, p90_ms=8.2, p99_ms=1200.0
    )


def test_hey_report() -> None:
    result = parse_hey(HEY, 8.0)
    assert (result.requests, result.non_2xx, result.errors, result.rps) == (10480, 4, 3, 1310.0)
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == pytest.approx((5.5, 8.2, 12.0))


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(100, 0, -1)]
    assert (percentile(values, 0.5), percentile(values, 0.9), percentile(values, 0.99)) == (50.0, 90.0, 99.0)
    assert percentile([], 0.5) == 0.0
