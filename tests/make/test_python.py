"""`make` checks the Python before anything else: a wrong one is named with the fix (PYTHON=, the README), and a
.venv made by another Python is made again instead of failing in pip. One range, 3.11 to 3.13, is stated in
pyproject.toml, the README and the check itself, and `make run` works on each of those Pythons found here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.make.sandbox import Sandbox, fake_python_310, lock_lines
from tools.stack import ROOT, free_port

# Tiny real locks (hashed, from requirements/): the Makefile's logic, not the download, is under test here. With
# setuptools when the runtime lock has it: `make install` then installs the project itself, which it builds.
SMALL_LOCKS = {
    "runtime.txt": lock_lines("runtime.txt", "sniffio", "setuptools"),
    "dev.txt": lock_lines("runtime.txt", "sniffio", "setuptools") + lock_lines("dev.txt", "iniconfig"),
}


def test_make_run_with_a_python_older_than_3_11_says_what_to_do(tmp_path: Path) -> None:
    sandbox = Sandbox.create(tmp_path, SMALL_LOCKS)
    fake = fake_python_310(tmp_path / "bin" / "python3.10")
    made = sandbox.make("run", f"PYTHON={fake}", timeout=30)
    assert made.returncode != 0
    assert made.seconds < 10, made
    assert f"PYTHON={fake} is Python 3.10.12; this demo needs Python 3.11, 3.12 or 3.13" in made.stderr
    assert "make run PYTHON=python3.11" in made.stderr and "README.md" in made.stderr
    assert "Could not find a version" not in made.output
    assert not sandbox.venv.exists(), "nothing may be installed with the wrong Python"


def test_with_no_python_3_11_on_path_make_names_what_it_found_and_the_fix(tmp_path: Path) -> None:
    sandbox = Sandbox.create(tmp_path, SMALL_LOCKS)
    bin_dir = tmp_path / "bin"
    fake_python_310(bin_dir / "python3")
    for tool in ("make", "bash"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    made = sandbox.make("run", timeout=30, env={"PATH": str(bin_dir)})
    assert made.returncode != 0
    assert "no Python 3.11, 3.12 or 3.13 on PATH (python3 is 3.10.12)" in made.stderr, made
    assert "make run PYTHON=" in made.stderr and "README.md" in made.stderr
    assert not sandbox.venv.exists()


def test_a_venv_made_by_another_python_is_made_again(tmp_path: Path) -> None:
    sandbox = Sandbox.create(tmp_path, SMALL_LOCKS)
    # What a fresh clone had after `make run` with Ubuntu 22.04's Python 3.10.
    fake_python_310(sandbox.venv / "bin" / "python")
    made = sandbox.make("install", timeout=300)
    assert made.returncode == 0, made
    assert "==> .venv was made by Python 3.10.12" in made.stdout, made
    assert "making it again with python3" in made.stdout
    assert sandbox.installed("sniffio") and sandbox.installed("iniconfig")
    again = sandbox.make("install", "PYTHON=python3")
    assert again.returncode == 0 and again.stdout == "", again  # same Python: nothing is redone


def test_run_only_and_full_installs_take_turns_in_one_venv(tmp_path: Path) -> None:
    sandbox = Sandbox.create(tmp_path, SMALL_LOCKS)
    runtime = sandbox.make(".venv/.installed-runtime", timeout=300)  # what `make run` asks for
    assert runtime.returncode == 0, runtime
    assert sandbox.installed("sniffio") and not sandbox.installed("iniconfig")
    full = sandbox.make("install", timeout=300)
    assert full.returncode == 0, full
    assert "development lock" in full.stdout and "runtime lock" not in full.stdout, "runtime was installed already"
    assert sandbox.installed("iniconfig")
    assert sandbox.make(".venv/.installed-runtime").stdout == ""  # nothing installed again
    assert sandbox.make("install").stdout == ""
    # A changed runtime lock is installed again by either path, and the full install follows it.
    (sandbox.root / "requirements" / "runtime.txt").touch()
    after = sandbox.make("install", timeout=300)
    assert "runtime lock" in after.stdout and "development lock" in after.stdout, after


def test_make_says_it_will_run_apt_get_before_it_does(tmp_path: Path) -> None:
    """A Debian Python without its venv module: make names the package and says it will use apt-get first."""
    sandbox = Sandbox.create(tmp_path, SMALL_LOCKS)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python3.11"
    python.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "if sys.argv[1:2] != ['-c']:\n    sys.exit('No module named venv')\n"
        "code = sys.argv[2]\nsys.argv = ['-c', *sys.argv[3:]]\nexec(compile(code, '<string>', 'exec'))\n"
    )
    python.chmod(0o755)
    apt_get = bin_dir / "apt-get"
    apt_get.write_text(f'#!/bin/sh\necho "apt-get $*"; echo "$*" >> {tmp_path}/apt-calls\n')
    apt_get.chmod(0o755)
    made = sandbox.make("install", f"PYTHON={python}", env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}, timeout=60)
    assert made.returncode != 0, "the stand-in Python still has no venv module after apt-get"
    if os.getuid() != 0:
        assert "sudo apt-get install python3.11-venv" in made.stderr, made
        return
    said = made.stdout.index("has no venv module: installing python3.11-venv with apt-get")
    assert said < made.stdout.index("apt-get update"), made.stdout
    assert (tmp_path / "apt-calls").read_text().splitlines() == ["update -qq", "install -y -qq python3.11-venv"]


SUPPORTED = ("3.11", "3.12", "3.13")


def _venv_sh_range() -> tuple[str, str]:
    text = (ROOT / "scripts" / "venv.sh").read_text()
    low = re.search(r"^MINIMUM=(\S+)$", text, re.M)
    below = re.search(r"^BELOW=(\S+)$", text, re.M)
    assert low and below
    return low.group(1), below.group(1)


def test_one_python_range_in_pyproject_the_readme_and_the_check() -> None:
    low, below = _venv_sh_range()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={low},<{below}"
    minor_low, minor_below = (int(v.split(".")[1]) for v in (low, below))
    assert tuple(f"3.{n}" for n in range(minor_low, minor_below)) == SUPPORTED
    readme = (ROOT / "README.md").read_text()
    assert "You need Python 3.11, 3.12 or 3.13" in readme
    assert f'requires-python = ">={low},<{below}"' in readme
    assert ">= 3.11" not in readme, "the README states the range one way"


def test_a_python_that_does_not_run_is_named_with_what_it_said(tmp_path: Path) -> None:
    """A pyenv shim for a version pyenv has not selected exits 127 with its own words: make shows them, rather than
    calling it a Python of an unknown version."""
    sandbox = Sandbox.create(tmp_path, SMALL_LOCKS)
    shim = tmp_path / "bin" / "python3.12"
    shim.parent.mkdir()
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.12: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    made = sandbox.make("run", f"PYTHON={shim}", timeout=30)
    assert made.returncode != 0
    assert f"PYTHON={shim} did not run as a Python (pyenv: python3.12: command not found)" in made.stderr, made
    assert "make run PYTHON=" in made.stderr
    assert not sandbox.venv.exists()


def _installed_python(version: str) -> str | None:
    """A Python `version` that runs on this machine: on PATH, or one pyenv installed (even if not selected)."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(
        str(p) for p in Path("~/.pyenv/versions").expanduser().glob(f"{version}.*/bin/python{version}")
    )
    for candidate in filter(None, candidates):
        ran = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, check=False
        )
        if ran.returncode == 0:
            return candidate
    return None


@pytest.mark.timeout(600)
@pytest.mark.parametrize("version", SUPPORTED)
def test_make_run_works_on_each_python_in_the_range(tmp_path: Path, version: str) -> None:
    python = _installed_python(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine (PATH or ~/.pyenv/versions)")
    sandbox = Sandbox.create(tmp_path)
    port, otlp_port = free_port(3), free_port()
    made = sandbox.make(
        "run", f"PYTHON={python}", f"RUN_FLAGS=--once --port {port} --otlp-port {otlp_port}", timeout=540
    )
    assert made.returncode == 0, made.output
    assert f"(Python {version}." in made.stdout, made.stdout
    assert "second: process dev.knative.tracing.hello" in made.stdout, made.output
