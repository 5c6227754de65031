"""docs/bench.md shows only commands that work: each `make bench BENCH_FLAGS=...` parses with bench/run.py's
options, and the `python -m` modules it names exist."""

from __future__ import annotations

import importlib.util
import re
import shlex

from bench.run import arguments
from tools.stack import ROOT

DOC = ROOT / "docs" / "bench.md"


def _commands() -> list[str]:
    blocks = re.findall(r"^```(?:sh|console)?\n(.*?)^```", DOC.read_text(), re.S | re.M)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_every_make_bench_command_in_the_doc_parses() -> None:
    commands = [c for c in _commands() if c.startswith("make bench")]
    assert len(commands) >= 4, commands
    for command in commands:
        words = shlex.split(command)
        assert words[:2] == ["make", "bench"], command
        flags = [w.split("=", 1)[1] for w in words[2:] if w.startswith("BENCH_FLAGS=")]
        assert len(words) == 2 + len(flags), f"{command}: make bench takes BENCH_FLAGS only"
        arguments().parse_args(shlex.split(" ".join(flags)))  # exits (fails the test) on an unknown option


def test_every_module_the_doc_runs_exists() -> None:
    modules = [re.search(r"-m (\S+)", c) for c in _commands() if " -m " in c]
    assert modules, "the doc shows how to read a profile"
    for found in modules:
        assert found and importlib.util.find_spec(found.group(1)) is not None, found
