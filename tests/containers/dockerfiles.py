"""Reading the Dockerfiles and .dockerignore as Docker does, for tests that have no engine to build with.

Covers what this project's Dockerfiles use: ARG before FROM, named stages, ENV (several pairs, $VAR expansion),
WORKDIR, COPY (from the context or --from a stage), USER, CMD; `\\` continuations and `#` comment lines.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tools.stack import ROOT

SERVICES = ("first", "second", "broker")
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper case, as Docker treats it."""
    args: str
    line: int


@dataclass
class Stage:
    base: str
    """The FROM image with build args substituted."""
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self, inherited: dict[str, str]) -> dict[str, str]:
        """The environment after this stage's ENV instructions, starting from `inherited` (the base image's)."""
        env = dict(inherited)
        for instruction in self.all("ENV"):
            for pair in shlex.split(instruction.args):
                name, _, value = pair.partition("=")
                env[name] = _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)
        return env

    def workdir(self) -> str:
        workdirs = self.all("WORKDIR")
        return workdirs[-1].args if workdirs else "/"

    def user(self) -> str | None:
        users = self.all("USER")
        return users[-1].args if users else None

    def cmd(self) -> list[str]:
        """The exec-form CMD; a shell-form CMD fails the parse (it would make /bin/sh PID 1, not Python)."""
        cmds = self.all("CMD")
        assert cmds, "the final stage has no CMD"
        value = json.loads(cmds[-1].args)
        assert isinstance(value, list), f"CMD must be exec form (a JSON list), got {cmds[-1].args!r}"
        return [str(part) for part in value]


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    destination: str
    from_stage: str | None


def instructions(path: Path) -> list[Instruction]:
    result: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(part for part in pending if part).partition(" ")
        result.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    assert not pending, f"{path}: the last instruction ends with a line continuation"
    return result


def stages(path: Path) -> list[Stage]:
    """The build stages in order; the last one is the image."""
    build_args: dict[str, str] = {}
    result: list[Stage] = []
    for instruction in instructions(path):
        if instruction.keyword == "ARG" and not result:
            arg, _, default = instruction.args.partition("=")
            build_args[arg] = default
        elif instruction.keyword == "FROM":
            words = instruction.args.split()
            base = _VAR.sub(lambda m: build_args.get(m.group(1) or m.group(2), ""), words[0])
            result.append(Stage(base, words[2] if len(words) == 3 and words[1].upper() == "AS" else None))
        else:
            assert result, f"{path}:{instruction.line}: {instruction.keyword} before FROM"
            result[-1].instructions.append(instruction)
    return result


def copies(stage: Stage) -> list[Copy]:
    result: list[Copy] = []
    for instruction in stage.all("COPY"):
        words = shlex.split(instruction.args)
        flags = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in words if w.startswith("--") and "=" in w}
        paths = [w for w in words if not w.startswith("--")]
        result.append(Copy(tuple(paths[:-1]), paths[-1], flags.get("--from")))
    return result


def _pattern(rule: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex on a slash-separated relative path."""
    parts: list[str] = []
    i = 0
    while i < len(rule):
        if rule.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
        elif rule.startswith("**", i):
            parts.append(".*")
            i += 2
        elif rule[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif rule[i] == "?":
            parts.append("[^/]")
            i += 1
        else:
            parts.append(re.escape(rule[i]))
            i += 1
    return re.compile("".join(parts) + r"\Z")


@cache
def _rules(root: Path) -> list[tuple[re.Pattern[str], bool]]:
    ignore = root / ".dockerignore"
    rules: list[tuple[re.Pattern[str], bool]] = []
    for raw in ignore.read_text().splitlines() if ignore.exists() else []:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        rules.append((_pattern(line.lstrip("!").strip("/")), keep))
    return rules


def in_context(relative: str, root: Path = ROOT) -> bool:
    """Whether the build context holds `relative`: the last rule matching it or a parent folder decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern, keep in _rules(root):
        if any(pattern.match(candidate) for candidate in candidates):
            included = keep
    return included


def context_files(source: str, root: Path = ROOT) -> list[Path]:
    """The files a `COPY <source>` takes from the context: all files under it that .dockerignore lets in."""
    base = root / source.rstrip("/")
    found = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
    return [p for p in found if in_context(p.relative_to(root).as_posix(), root)]
