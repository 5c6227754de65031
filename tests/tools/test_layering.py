"""tools/ stays flat: no tool imports a service (first, second, broker), and the command-line tools never import
each other; they share the library modules only."""

from __future__ import annotations

import ast
from pathlib import Path

from tools.stack import ROOT

SERVICES = {"first", "second", "broker"}
COMMANDS = {"run_demo", "verify_trace", "compose_up", "cluster_demo", "untraced_hop", "otlp_receiver"}
"""Modules run as `python -m tools.<name>`; otlp_receiver is also the library the others import."""


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "tools":
                found |= {f"tools.{alias.name}" for alias in node.names}
    return found


def test_no_tool_imports_a_service() -> None:
    for path in sorted((ROOT / "tools").glob("*.py")):
        services = {name for name in _imports(path) if name.split(".")[0] in SERVICES}
        assert not services, f"{path.name} imports {services}: tools read the system from outside"


def test_command_line_tools_do_not_import_each_other() -> None:
    library = COMMANDS - {"otlp_receiver"}
    for path in sorted((ROOT / "tools").glob("*.py")):
        sideways = {name for name in _imports(path) if name.startswith("tools.") and name[6:] in library}
        assert not sideways, f"{path.name} imports the command-line tool(s) {sideways}"


def test_the_import_graph_is_shallow() -> None:
    graph = {
        path.stem: {n[6:] for n in _imports(path) if n.startswith("tools.")} for path in (ROOT / "tools").glob("*.py")
    }

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        assert name not in seen, f"import cycle through tools.{name}"
        return 1 + max((depth(n, seen | {name}) for n in graph.get(name, ()) if n in graph), default=0)

    deepest = max(graph, key=depth)
    # A command, the report it prints, the journeys it finds, the hops they are checked against, the span model.
    assert depth(deepest) <= 5, f"tools.{deepest} is {depth(deepest)} import levels deep"
