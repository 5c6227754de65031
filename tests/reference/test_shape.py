"""The shape of a reference: first and second readable in a few files, everything else behind the ecosystem's
extension points, layers without circles, and no private part of a dependency in product code."""

from __future__ import annotations

import ast
from pathlib import Path

from tools.stack import ROOT

APPS = ("first/app.py", "second/app.py")
PRODUCT = ("first", "second", "event_tracing", "plugins", "broker")
LOCAL = {*PRODUCT, "tools", "tests", "bench"}
# The layers, each importing only those after it: the apps, their lesson module; the broker (Knative's
# stand-in), which runs with the plug-ins; the plug-ins, which import nothing of the project's but each other.
MAY_IMPORT = {
    "first": {"event_tracing"},
    "second": {"event_tracing"},
    "broker": {"event_tracing", "plugins"},
    "event_tracing": set(),
    "plugins": set(),
}


def _modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def _file(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _closure(start: list[Path]) -> dict[Path, int]:
    """Every project file the apps import, transitively, with its non-blank lines."""
    seen: dict[Path, int] = {}
    todo = list(start)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = sum(1 for line in path.read_text().splitlines() if line.strip())
        for module in _modules(path):
            if module.split(".")[0] in LOCAL:
                parts = module.split(".")
                todo.extend(f for i in range(1, len(parts) + 1) if (f := _file(".".join(parts[:i]))))
    return {path: lines for path, lines in seen.items() if lines >= 5}


def test_a_reader_of_the_apps_follows_at_most_six_files_and_800_lines() -> None:
    closure = _closure([ROOT / app for app in APPS])
    names = sorted(str(path.relative_to(ROOT)) for path in closure)
    assert len(closure) <= 6, names
    assert sum(closure.values()) <= 800, {name: closure[ROOT / name] for name in names}
    assert {path.parts[len(ROOT.parts)] for path in closure} <= {"first", "second", "event_tracing"}, names


def test_the_readme_names_every_file_of_that_closure() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Reading the code") : readme.index("**The broker's path**")]
    for path in _closure([ROOT / app for app in APPS]):
        assert f"`{path.relative_to(ROOT)}`" in section, f"the reading order leaves out {path.relative_to(ROOT)}"


def test_layers_import_downwards_only() -> None:
    for package, allowed in MAY_IMPORT.items():
        for path in sorted(ROOT.joinpath(package).rglob("*.py")):
            local = {module.split(".")[0] for module in _modules(path)} & LOCAL - {package}
            assert local <= allowed, f"{path.relative_to(ROOT)} imports {sorted(local - allowed)}"


def _private_uses(path: Path) -> list[str]:
    """Imports of a dependency's `_private` modules or names, and getattr/setattr of `_private` attributes."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in LOCAL or node.module == "__future__":
                continue
            names = [*node.module.split("."), *(alias.name for alias in node.names)]
            found += [f"{node.lineno}: {name}" for name in names if name.startswith("_") and not name.startswith("__")]
        elif isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: {alias.name}"
                for alias in node.names
                if any(p.startswith("_") and not p.startswith("__") for p in alias.name.split(".")[1:])
            ]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "") in ("getattr", "setattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
        ):
            name = str(node.args[1].value)
            if name.startswith("_") and not name.startswith("__"):
                found.append(f"{node.lineno}: {name}")
    return found


def test_no_private_name_of_a_dependency_in_product_code() -> None:
    for package in PRODUCT:
        for path in sorted(ROOT.joinpath(package).rglob("*.py")):
            assert not _private_uses(path), f"{path.relative_to(ROOT)}: {_private_uses(path)}"


def test_the_private_check_sees_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from opentelemetry.sdk.trace.sampling import _get_from_env_or_default\ngetattr(app, '_x')\n")
    assert len(_private_uses(bad)) == 2
