"""A copy of the repository's make machinery in a temporary folder, with a `.venv` of its own, so a test can run
real `make` from a fresh clone's state (no .venv, a wrong Python, a .venv made by another Python) without
touching the repository's own .venv. The code folders are linked, so `make run` works there too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools.stack import ROOT

CODE = ("plugins", "event_tracing", "first", "second", "broker", "config", "tools")

# A stand-in for a Python 3.10 (Ubuntu 22.04's python3): it runs `-c` code like a Python would, with
# sys.version_info saying 3.10.12, and can do nothing else (no venv, no pip).
FAKE_PYTHON_310 = f"""#!{sys.executable}
import sys
sys.version_info = (3, 10, 12, "final", 0)
if sys.argv[1:2] != ["-c"]:
    sys.exit("this fake Python 3.10 only runs -c")
code = sys.argv[2]
sys.argv = ["-c", *sys.argv[3:]]
exec(compile(code, "<string>", "exec"))
"""


def fake_python_310(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FAKE_PYTHON_310)
    path.chmod(0o755)
    return path


def lock_lines(lock: str, *packages: str) -> str:
    """The hashed entries of `packages` from requirements/`lock`: a small real lock for fast installs."""
    lines = (ROOT / "requirements" / lock).read_text().splitlines()
    kept: list[str] = []
    for i, line in enumerate(lines):
        if line.split("==")[0] in packages:
            kept.append(line)
            kept.extend(following for following in lines[i + 1 :] if following.startswith("    --hash="))
    return "\n".join(kept) + "\n"


@dataclass
class Sandbox:
    root: Path

    @classmethod
    def create(cls, where: Path, locks: dict[str, str] | None = None) -> Sandbox:
        """`locks` replaces requirements/<name> files (runtime.txt, dev.txt) with the given text."""
        root = where / "repo"
        root.mkdir()
        shutil.copy(ROOT / "Makefile", root)
        shutil.copy(ROOT / "pyproject.toml", root)  # `make install` installs the project (its plug-ins)
        (root / "scripts").mkdir()
        shutil.copy(ROOT / "scripts" / "venv.sh", root / "scripts")
        shutil.copytree(ROOT / "requirements", root / "requirements")
        for name, text in (locks or {}).items():
            (root / "requirements" / name).write_text(text)
        for name in CODE:
            (root / name).symlink_to(ROOT / name)
        return cls(root)

    @property
    def venv(self) -> Path:
        return self.root / ".venv"

    def make(self, *args: str, timeout: float = 60, env: dict[str, str] | None = None) -> Made:
        base = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV", "MAKEFLAGS", "MAKELEVEL")}
        started = time.monotonic()
        done = subprocess.run(
            ["make", "--no-print-directory", *args],
            cwd=self.root,
            env={**base, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Made(done.returncode, done.stdout, done.stderr, time.monotonic() - started)

    def installed(self, package: str) -> bool:
        found = subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", f"import importlib.util as u; print(u.find_spec('{package}'))"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return found.stdout.strip() != "None"


@dataclass(frozen=True)
class Made:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def du_mb(path: Path) -> float:
    """Disk usage of `path` in MB, as `du` counts it."""
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, timeout=60, check=True).stdout
    return int(out.split()[0]) / 1024
