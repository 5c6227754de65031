"""Sampling profiles of the services under the bench's load, with py-spy (`make bench BENCH_FLAGS=--profile`).

py-spy writes collapsed stacks (`frame;frame;... count` a line); `summary` turns one file into the frames that
hold the most samples, inclusive, which is how docs/bench.md reads them. A profiled run is slower than an
unprofiled one: use its shares, not its throughput.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from tools.stack import ROOT

PY_SPY = ROOT / ".venv" / "bin" / "py-spy"


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Sample `pid` for `seconds` into `out`; None (with a note) when py-spy is missing."""
    binary = str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy")
    if binary is None:
        print("note: py-spy is not installed; no profile taken")
        return None
    command = [binary, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", "200", "-f", "raw"]
    return subprocess.Popen([*command, "-o", str(out), "--nonblocking"], stdout=subprocess.DEVNULL)


def _frame(text: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file path after site-packages)", one name per function.
    text = re.sub(r":\d+\)$", ")", text)
    return re.sub(r"\(/.*?site-packages/", "(", text)


def summary(path: Path, top: int = 25) -> str:
    """The `top` frames with the largest inclusive share of samples in one py-spy raw file."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for frame in {_frame(f) for f in stack.split(";")}:
            inclusive[frame] += int(count)
    lines = [f"{path.name}: {total} samples"]
    lines += [f"{100 * n / max(total, 1):5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarize py-spy raw profiles: top inclusive frames")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for file in args.files:
        print(summary(file, args.top))


if __name__ == "__main__":
    main()
