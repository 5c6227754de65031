"""`make bench` in its quick mode, so the bench cannot rot: it runs all three variants for real and writes every
number the README quotes. The Python load generator is forced, so this passes where wrk and hey are absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tools.stack import ROOT

SERVICES = {"first", "broker", "second"}
PER_VARIANT = {"rps", "p50_ms", "p90_ms", "p99_ms", "first_request_s", "first_request_ms", "requests"}
PER_SERVICE = {"healthz_s", "cpu_ms_per_request", "rss_after_warmup_mb", "rss_after_load_mb"}


def test_quick_bench_writes_every_number(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--generator", "python", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "throughput (req/s)" in done.stdout
    result = json.loads(out.read_text())

    assert result["settings"]["generator"] == "python"
    assert {"nproc", "cpu_model", "memory_gb"} <= set(result["machine"])
    assert set(result["summary"]) == {"untraced", "traced", "bare"}
    for variant, numbers in result["summary"].items():
        assert set(numbers) >= PER_VARIANT, variant
        assert numbers["requests"] > 0 and numbers["rps"] > 0, variant
        assert numbers["errors"] == 0 and numbers["non_2xx"] == 0, variant
        for metric in PER_SERVICE:
            assert set(numbers[metric]) == SERVICES, (variant, metric)
            assert all(value > 0 for value in numbers[metric].values()), (variant, metric)
    traced = result["summary"]["traced"]
    # Spans really travelled: the services counted what they ended, the receiver what it got.
    assert traced["spans_ended"] > 0
    assert traced["spans_dropped"] == traced["spans_ended"] - traced["spans_received"]
    assert {"traced_vs_untraced_rps", "traced_vs_bare_rps", "traced_vs_untraced_cold_start"} <= set(result["ratios"])
    assert {g["met"] for g in result["goals"].values()} <= {True, False}
    assert len(result["runs"]) == 3
