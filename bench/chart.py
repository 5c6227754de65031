"""The bench's picture, written next to its JSON: CPU per request by layer and service (bench/layers.py), and
latency percentiles traced against untraced.

A small SVG written by hand rather than a plotting library: the chart is a few dozen rectangles and labels, while
matplotlib would bring numpy, Pillow and a font cache into the development lock and about a second of import to
every bench run. SVG is text: a reference chart diffs in review and renders on GitHub and in any browser. Delete
this module for a plotting library's chart if the project takes one in for another reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from bench.layers import LAYERS
from tools.stack import SERVICES

WIDTH, HEIGHT = 960, 400
COLOURS = {
    "off": "#bab0ac",
    "propagation": "#4e79a7",
    "spans": "#f28e2b",
    "export": "#e15759",
    "log_correlation": "#59a14f",
    "untraced": "#4e79a7",
    "traced": "#e15759",
    "bare": "#bab0ac",
}


def _text(x: float, y: float, text: str, *, anchor: str = "start", weight: str = "normal", size: int = 12) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-weight="{weight}" font-family="sans-serif" '
        f'font-size="{size}">{escape(text)}</text>'
    )


def _rect(x: float, y: float, width: float, height: float, *, colour: str, title: str) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(width, 0):.1f}" height="{height:.1f}" fill="{colour}">'
        f"<title>{escape(title)}</title></rect>"
    )


def _layers_panel(breakdown: dict[str, Any] | None) -> list[str]:
    """Horizontal stacked bars: per service, the demo with no OpenTelemetry, then each layer on top."""
    parts = [_text(20, 24, "CPU per request by layer (ms, median of paired rounds)", weight="bold")]
    if breakdown is None:
        return [*parts, _text(20, 60, "no breakdown in this run (it needs every layer variant)")]
    left, right, top, bar = 80, 540, 50, 34
    rows = [*SERVICES, "all"]
    segments = {
        row: [("off", "no OpenTelemetry", breakdown["off_cpu_ms_per_request"][row])]
        + [(layer.key, layer.label, breakdown["layers"][layer.key]["cpu_ms_per_request"][row]) for layer in LAYERS]
        for row in rows
    }
    # A layer measured below zero (noise) is drawn as nothing; its value is still in the JSON and the table.
    widest = max(sum(max(v, 0) for _, _, v in segments[row]) for row in rows) or 1.0
    scale = (right - left) / widest
    for index, row in enumerate(rows):
        y = top + index * (bar + 14)
        parts.append(_text(left - 8, y + bar / 2 + 4, row, anchor="end"))
        x: float = left
        for key, label, value in segments[row]:
            width = max(value, 0) * scale
            parts.append(_rect(x, y, width, bar, colour=COLOURS[key], title=f"{row}: {label} {value:.3f} ms"))
            if width > 34:
                parts.append(_text(x + width / 2, y + bar / 2 + 4, f"{value:.2f}", anchor="middle"))
            x += width
        parts.append(_text(x + 6, y + bar / 2 + 4, f"{sum(v for _, _, v in segments[row]):.2f} ms"))
    legend_y = top + len(rows) * (bar + 14) + 4
    entries = [("off", "no OpenTelemetry"), *((layer.key, layer.label) for layer in LAYERS)]
    for index, (key, label) in enumerate(entries):
        x, y = 20 + (index % 2) * 290, legend_y + (index // 2) * 18
        parts.append(_rect(x, y, 12, 12, colour=COLOURS[key], title=label))
        parts.append(_text(x + 16, y + 11, label))
    parts.append(_text(20, legend_y + 3 * 18 + 8, "A layer measured below zero (noise) is not drawn.", size=10))
    return parts


def _latency_panel(summary: dict[str, Any]) -> list[str]:
    """Grouped bars: p50, p90, p99 of each variant that ran (untraced, traced, and the bare floor)."""
    left, right, top, bottom = 640, 950, 50, 330
    parts = [_text(left - 20, 24, "Latency under load (ms, median of rounds)", weight="bold")]
    variants = [v for v in ("untraced", "traced", "bare") if v in summary]
    percentiles = ("p50_ms", "p90_ms", "p99_ms")
    highest = max((summary[v][p] for v in variants for p in percentiles), default=0.0) or 1.0
    group = (right - left) / len(percentiles)
    width = (group - 16) / max(len(variants), 1)
    for g, percentile in enumerate(percentiles):
        x0 = left + g * group
        parts.append(_text(x0 + group / 2, bottom + 16, percentile.removesuffix("_ms"), anchor="middle"))
        for i, variant in enumerate(variants):
            value = summary[variant][percentile]
            height = value / highest * (bottom - top)
            x = x0 + 8 + i * width
            parts.append(
                _rect(x, bottom - height, width - 2, height, colour=COLOURS[variant], title=f"{variant} {value:.2f} ms")
            )
            parts.append(_text(x + width / 2 - 1, bottom - height - 4, f"{value:.0f}", anchor="middle", size=10))
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>')
    for i, variant in enumerate(variants):
        y, x = bottom + 34, left + i * 95
        parts.append(_rect(x, y, 12, 12, colour=COLOURS[variant], title=variant))
        parts.append(_text(x + 16, y + 11, variant))
    return parts


def render(result: dict[str, Any]) -> str:
    """The whole picture of one bench result (as written to JSON) as an SVG document."""
    machine, settings = result.get("machine", {}), result.get("settings", {})
    caption = (
        f"make bench, {result.get('started', '')}: {settings.get('rounds')} round(s), {settings.get('concurrency')} "
        f"connections, {settings.get('duration')} s each, {machine.get('nproc')} CPUs ({machine.get('cpu_model')})"
    )
    body = [
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        *_layers_panel(result.get("breakdown")),
        *_latency_panel(result.get("summary", {})),
        _text(20, HEIGHT - 12, caption),
    ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}">\n' + "\n".join(body) + "\n</svg>\n"
    )


def write(path: Path, result: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(result))
    return path
