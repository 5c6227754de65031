"""The README is a front door (short, the article and the workshop on its first screen), and no relative link in
the README or docs/ leads nowhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools.stack import ROOT

README = ROOT / "README.md"
FIRST_SCREEN = 40
ARTICLE = "https://opentelemetry.io/blog/2022/knative/"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _links(text: str) -> list[str]:
    return _LINK.findall(_FENCE.sub("", text))


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    return {_anchor(m) for m in re.findall(r"^#+ (.+)$", text, re.M)}


def test_readme_is_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move the detail to docs/"
    first_screen = "\n".join(lines[:FIRST_SCREEN])
    links = _links(first_screen)
    assert ARTICLE in links, "the article the demo implements, linked on the first screen"
    assert "docs/workshop.md" in links, "the workshop, linked on the first screen"
    assert "make run" in first_screen and "make test" in first_screen
    for guide in ("docs/compose.md", "docs/knative.md", "docs/configuration.md"):
        assert guide in _links("\n".join(lines)), f"README.md must link {guide}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for link in _links(document.read_text()):
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (document.parent / path).resolve() if path else document
        if not target.exists() or (anchor and target.suffix == ".md" and anchor not in _anchors(target)):
            broken.append(link)
    assert not broken, f"{document.relative_to(ROOT)}: links that lead nowhere: {broken}"
