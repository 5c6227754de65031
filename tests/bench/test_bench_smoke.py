"""`make bench` in its quick mode, so the bench cannot rot: it runs all three variants for real, writes every
number the README quotes to an untracked file, prints ratios people read right and a plain summary, and
leaves `git status` as it was. A run that fails keeps the runs that finished before it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import DEFAULT_OUT, REFERENCE
from tools.stack import ROOT

SERVICES = {"first", "broker", "second"}
PER_VARIANT = {"rps", "p50_ms", "p90_ms", "p99_ms", "first_request_s", "first_request_ms", "requests"}
PER_SERVICE = {"healthz_s", "cpu_ms_per_request", "rss_after_warmup_mb", "rss_after_load_mb"}


def _git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


@pytest.mark.timeout(180)
def test_make_bench_quick_prints_two_decimal_ratios_and_leaves_git_status_clean() -> None:
    before, reference = _git_status(), REFERENCE.read_bytes()
    done = subprocess.run(
        ["make", "--no-print-directory", "bench", "BENCH_FLAGS=--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert _git_status() == before, "make bench must not change what git tracks or sees"
    assert REFERENCE.read_bytes() == reference, "the committed reference run is rewritten only when asked"

    throughput = next(line for line in done.stdout.splitlines() if line.startswith("throughput (req/s)"))
    ratios = throughput.split()[-2:]
    assert all(re.fullmatch(r"\d+\.\d\d", ratio) for ratio in ratios), throughput
    last = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"==> tracing costs -?\d+% of throughput and -?\d+\.\d ms at p50 on this machine \(.*\); \d of 5 goals met.*",
        last,
    ), last

    result = json.loads(DEFAULT_OUT.read_text())
    assert result["failure"] is None
    assert result["settings"]["generator"] in {"wrk", "hey", "python"}
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


def test_a_failed_run_keeps_the_runs_before_it(tmp_path: Path) -> None:
    """Round 1 runs untraced, then traced: a setting only the traced services read makes the second run fail."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--generator", "python", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: a run failed after 1 finished (kept in" in done.stderr
    result = json.loads(out.read_text())
    assert [run["variant"] for run in result["runs"]] == ["untraced"]
    assert result["summary"]["untraced"]["requests"] > 0
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in result["failure"]
