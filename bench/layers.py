"""Where tracing's cost goes: variants of the demo that switch one layer of OpenTelemetry on at a time, and the
breakdown of CPU per request between them (docs/bench.md, "Where the cost goes").

From `off` (nothing of OpenTelemetry runs: SDK disabled, no propagators) to `traced` (the full demo), each variant
adds one layer to the one before it, so each layer's cost is the difference between two variants measured in the
same round (paired), then the median over the rounds. Only standard settings switch the layers, so each variant is
a configuration a user can run.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tools.stack import SERVICES

ENV: dict[str, dict[str, str]] = {
    "off": {"OTEL_SDK_DISABLED": "true", "OTEL_PROPAGATORS": "none"},
    "untraced": {"OTEL_SDK_DISABLED": "true"},
    # Log correlation stays off until the last layer, so each variant holds every layer below it and no other.
    "recorded": {"OTEL_TRACES_EXPORTER": "none", "OTEL_PYTHON_LOG_CORRELATION": "false"},
    "exported": {"OTEL_PYTHON_LOG_CORRELATION": "false"},
    "traced": {},
    "library": {},
}
"""Each demo variant's settings on top of the stack's (which point the OTLP exporter at the bench's receiver)."""
EXPORTING = frozenset({"exported", "traced", "library"})
"""The variants whose spans go to the receiver (the others run without one: `OTEL_TRACES_EXPORTER=none`)."""


@dataclass(frozen=True)
class Layer:
    key: str
    label: str
    without: str
    """The variant just below: everything but this layer."""
    with_: str
    """The variant that adds it."""


LAYERS = (
    # The load carries no trace context, so untraced has none to pass on: this layer is what propagation costs
    # then (reading the headers for one). With the SDK on, every hop writes and reads a context: that work is in
    # the spans layer.
    Layer("propagation", "propagation (extract, inject: W3C)", "off", "untraced"),
    Layer("spans", "spans recorded, not exported", "untraced", "recorded"),
    Layer("export", "batch processor + OTLP/HTTP export", "recorded", "exported"),
    Layer("log_correlation", "trace ids on log lines", "exported", "traced"),
)
VARIANTS = ("off", "untraced", "recorded", "exported", "traced")
"""The layer variants, from nothing to the full demo."""


class Measured(Protocol):
    variant: str
    round: int
    cpu_ms_per_request: dict[str, float]


def _paired_differences(runs: Sequence[Measured], above: str, below: str) -> dict[str, list[float]]:
    """Per service: CPU per request of `above` minus that of `below`, one value a round that ran both."""
    differences: dict[str, list[float]] = {name: [] for name in SERVICES}
    for number in sorted({r.round for r in runs}):
        mine = {r.variant: r for r in runs if r.round == number}
        if above in mine and below in mine:
            for name in SERVICES:
                differences[name].append(mine[above].cpu_ms_per_request[name] - mine[below].cpu_ms_per_request[name])
    return differences


def _medians(differences: dict[str, list[float]]) -> dict[str, float] | None:
    if not all(differences.values()):
        return None
    medians = {name: statistics.median(values) for name, values in differences.items()}
    # The three services' sum is the median of the rounds' sums, not the sum of medians.
    rounds = zip(*(differences[name] for name in SERVICES), strict=True)
    medians["all"] = statistics.median(sum(values) for values in rounds)
    return medians


def breakdown(runs: Sequence[Measured]) -> dict[str, Any] | None:
    """Each layer's CPU per request per service and its share of tracing's whole cost (traced - off); None when
    the runs do not hold every layer variant in at least one round."""
    total = _medians(_paired_differences(runs, "traced", "off"))
    base = _medians({name: [r.cpu_ms_per_request[name] for r in runs if r.variant == "off"] for name in SERVICES})
    if total is None or base is None:
        return None
    layers: dict[str, Any] = {}
    for layer in LAYERS:
        cost = _medians(_paired_differences(runs, layer.with_, layer.without))
        if cost is None:
            return None
        layers[layer.key] = {
            "label": layer.label,
            "variant": layer.with_,
            "cpu_ms_per_request": cost,
            "share_of_tracing": cost["all"] / total["all"] if total["all"] > 0 else None,
        }
    return {"off_cpu_ms_per_request": base, "tracing_cpu_ms_per_request": total, "layers": layers}


def table(found: dict[str, Any], rps: dict[str, float]) -> str:
    """The breakdown as people read it: a row per layer, a column per service, its share, and the variant's
    throughput."""
    columns = [*SERVICES, "all"]
    head = f"{'CPU per request (ms), median of paired rounds':<46}" + "".join(f"{c:>8}" for c in columns)
    lines = [head + f"{'share':>8}{'req/s':>8}"]

    def row(label: str, values: dict[str, float], share: str, variant: str) -> str:
        cells = "".join(f"{values[c]:>8.3f}" for c in columns)
        return f"{label:<46}{cells}{share:>8}{rps.get(variant, 0):>8.0f}"

    lines.append(row("no OpenTelemetry (off)", found["off_cpu_ms_per_request"], "", "off"))
    for layer in found["layers"].values():
        share = layer["share_of_tracing"]
        lines.append(
            row(
                f"+ {layer['label']}"[:46],
                layer["cpu_ms_per_request"],
                "-" if share is None else f"{share:.0%}",
                layer["variant"],
            )
        )
    lines.append(row("= tracing in all (traced - off)", found["tracing_cpu_ms_per_request"], "100%", "traced"))
    lines.append(
        "(each layer: its variant minus the one below, in the same round; medians of differences need not add up)"
    )
    return "\n".join(lines)
