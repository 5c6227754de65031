"""`make help` lists every documented target once, grouped by path, in the order people use them."""

from __future__ import annotations

import re
import subprocess

from tools.stack import ROOT

GROUPS = ("Local, no Docker", "Docker Compose", "Knative on kind", "Development")
# Within a group, the order of use: the demo first; then build, deploy, try, clean up.
IN_ORDER = (("run", "bench"), ("up", "down"), ("cluster", "deploy", "demo", "verify", "cluster-delete"),
            ("install", "test", "lock", "clean"))  # fmt: skip


def _help() -> str:
    done = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout


def test_help_groups_the_targets_by_path_in_the_order_of_use() -> None:
    text = _help()
    headings = [line for line in text.splitlines() if not line.startswith(" ")]
    assert [next(g for g in GROUPS if h.startswith(g)) for h in headings] == list(GROUPS), text
    sections = re.split(r"^\S.*$", text, flags=re.M)[1:]
    for section, targets in zip(sections, IN_ORDER, strict=True):
        listed = re.findall(r"^  make (\S+)", section, re.M)
        assert [t for t in listed if t in targets] == list(targets), (targets, section)


def test_help_lists_every_documented_target_once() -> None:
    files = [ROOT / "Makefile", *sorted((ROOT / "mk").glob("*.mk"))]
    documented = {m for f in files for m in re.findall(r"^([a-zA-Z_-]+):.*?## ", f.read_text(), re.M)}
    listed = re.findall(r"^  make (\S+)", _help(), re.M)
    assert sorted(listed) == sorted(documented)
