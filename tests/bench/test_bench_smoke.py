"""`make bench` in its quick mode, so the bench cannot rot: it runs every variant for real (untraced, traced, bare
and the layers between), writes every number the README quotes to an untracked file with its chart beside it,
prints ratios people read right, says in its own output that it is a smoke run (no layer breakdown, goal verdicts
or headline from one short round), and leaves `git status` as it was. A full run's report still has all of them. A
run that fails keeps the runs that finished before it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from bench.layers import LAYERS
from bench.layers import VARIANTS as LAYER_VARIANTS
from bench.run import DEFAULT_OUT, GOALS, REFERENCE, SMOKE_RUN, SMOKE_RUN_DONE, Settings, conclusion, tables
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
def test_make_bench_quick_says_it_is_a_smoke_run_and_leaves_git_status_clean() -> None:
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
    lines = done.stdout.strip().splitlines()
    assert lines[1] == SMOKE_RUN, "the run says what it is before any number"
    assert "smoke run (one 1 s round, not a measurement):" in done.stdout
    assert lines[-1] == SMOKE_RUN_DONE
    # One round's numbers are noise: no verdict, no headline, no layer costs (often negative) read as results.
    for verdict in (r"^goal ", r"goals met", r"tracing costs", r"^\+ ", r"^= tracing in all"):
        assert not re.search(verdict, done.stdout, re.M), f"quick mode printed {verdict!r}:\n{done.stdout}"

    result = json.loads(DEFAULT_OUT.read_text())
    assert result["failure"] is None
    assert result["settings"]["generator"] in {"wrk", "hey", "python"}
    assert {"nproc", "cpu_model", "memory_gb"} <= set(result["machine"])
    assert set(result["summary"]) == {*LAYER_VARIANTS, "bare"}
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
    assert len(result["runs"]) == len(LAYER_VARIANTS) + 1
    breakdown = result["breakdown"]
    assert set(breakdown["layers"]) == {layer.key for layer in LAYERS}
    for layer in breakdown["layers"].values():
        assert set(layer["cpu_ms_per_request"]) == {*SERVICES, "all"}, layer
    # Every layer variant ran with its own setting: the log-correlation switch really took the ids out.
    assert result["summary"]["exported"]["spans_ended"] > 0
    assert result["summary"]["recorded"].get("spans_ended") is None, "recorded spans are not exported"

    # The chart, next to the JSON (untracked like it): an SVG with both panels and every layer in its legend.
    picture = ElementTree.parse(DEFAULT_OUT.with_suffix(".svg")).getroot()
    texts = {"".join(node.itertext()) for node in picture.iter("{http://www.w3.org/2000/svg}text")}
    assert {
        "CPU per request by layer (ms, median of paired rounds)",
        "Latency under load (ms, median of rounds)",
    } <= texts
    assert {layer.label for layer in LAYERS} <= texts, texts


def test_a_failed_run_keeps_the_runs_before_it(tmp_path: Path) -> None:
    """Round 1 runs off, untraced and recorded (none of which exports), then exported: a setting only the exporting
    services read makes the fourth run fail."""
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
    assert "error: a run failed after 3 finished (kept in" in done.stderr
    result = json.loads(out.read_text())
    assert [run["variant"] for run in result["runs"]] == ["off", "untraced", "recorded"]
    assert result["summary"]["untraced"]["requests"] > 0
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in result["failure"]


def test_a_full_run_still_reports_the_breakdown_the_goals_and_the_headline() -> None:
    """The committed reference run (3 rounds) through the same report a full `make bench` prints."""
    final = json.loads(REFERENCE.read_text())
    settings = Settings(**final["settings"])
    ending = conclusion(final["summary"], final["ratios"], final["goals"], final["noise"])
    text = tables(final, settings) + "\n" + ending
    assert "smoke run" not in text
    for layer in LAYERS:
        assert re.search(rf"^\+ {re.escape(layer.label[:20])}.*\d+\.\d{{3}}", text, re.M), layer.label
    assert re.search(r"^= tracing in all \(traced - off\).*100%", text, re.M), text
    assert len(re.findall(r"^goal \S+: .*: (met|not met)$", text, re.M)) == len(final["goals"]) == len(GOALS)
    # The noise of the paired ratios, stated with the rounds it comes from.
    assert re.search(r"^noise traced_vs_untraced_rps: rounds \d\.\d{3}, \d\.\d{3}, \d\.\d{3}; spread", text, re.M), text
    assert re.search(
        r"^==> tracing costs -?\d+% of throughput \(\d+ vs \d+ req/s\) and adds "
        r"-?\d+\.\d ms at p50, -?\d+\.\d ms at p99 per hop \(first and broker\) on this machine; \d of 7 goals met",
        text,
        re.M,
    ), text
