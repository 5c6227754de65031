"""tools/knative_build.py (`make knative-binaries`): a source archive is built only when its tree is the one
recorded for the pinned tag, whatever its compression; otherwise the build stops naming the archive and the fix.
The build itself (Go, minutes) runs in tests/knative_real under CI."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tools.knative_build import TREE_DIGESTS, tree_digest
from tools.stack import ROOT


def _archive(path: Path, files: dict[str, bytes], *, level: int = 9, reverse: bool = False) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=level) as tar:
        for name, data in sorted(files.items(), reverse=reverse):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o664
            tar.addfile(info, io.BytesIO(data))
    return path


FILES = {
    "serving-knative-v1.22.1/go.mod": b"module knative.dev/serving\n",
    "serving-knative-v1.22.1/cmd/queue/main.go": b"package main\n",
}


def test_the_digest_is_of_the_tree_not_the_bytes(tmp_path: Path) -> None:
    one = tree_digest(_archive(tmp_path / "one.tar.gz", FILES, level=1))
    assert one == tree_digest(_archive(tmp_path / "two.tar.gz", FILES, level=9, reverse=True))
    changed = {**FILES, "serving-knative-v1.22.1/go.mod": b"module evil\n"}
    assert one != tree_digest(_archive(tmp_path / "three.tar.gz", changed))
    escaping = {"../serving-knative-v1.22.1/go.mod" if "go.mod" in k else k: v for k, v in FILES.items()}
    assert one != tree_digest(_archive(tmp_path / "four.tar.gz", escaping))


def _build(tmp_path: Path, source: Path, serving: str = "1.22.1") -> subprocess.CompletedProcess[str]:
    """The build as make runs it, with a `go` that must never be reached."""
    versions = ["--serving", serving, "--eventing", "1.22.2"]
    places = ["--bin-dir", str(tmp_path / "bin"), "--downloads", str(tmp_path / "downloads")]
    return subprocess.run(
        [sys.executable, "-m", "tools.knative_build", "--go", "/bin/false", *versions, *places],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KNATIVE_SRC": str(source)},
    )


def test_an_archive_whose_tree_differs_is_not_built(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    _archive(source / "serving-knative-v1.22.1.tar.gz", FILES)
    done = _build(tmp_path, source)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{source}/serving-knative-v1.22.1.tar.gz: tree digest" in done.stderr
    assert "not the recorded" in done.stderr and "go build" not in done.stdout


def test_a_missing_archive_and_an_unrecorded_pin_are_named(tmp_path: Path) -> None:
    done = _build(tmp_path, tmp_path)
    assert done.returncode == 1
    assert f"KNATIVE_SRC={tmp_path} holds no serving-knative-v1.22.1.tar.gz" in done.stderr, done.stderr
    _archive(tmp_path / "serving-knative-v1.22.0.tar.gz", {"serving-knative-v1.22.0/go.mod": b"x"})
    done = _build(tmp_path, tmp_path, serving="1.22.0")
    assert done.returncode == 1
    assert "no recorded tree digest for serving-knative-v1.22.0" in done.stderr, done.stderr


@pytest.mark.parametrize("name", sorted(TREE_DIGESTS))
def test_every_pin_of_the_makefile_has_a_recorded_digest(name: str) -> None:
    rule = "p: ; @echo serving-knative-v$(KNATIVE_SERVING_VERSION) eventing-knative-v$(KNATIVE_EVENTING_VERSION)"
    pins = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", rule, "p"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(pins) <= set(TREE_DIGESTS), f"pinned {pins}, recorded {sorted(TREE_DIGESTS)}"
    assert name in pins, f"{name} is recorded but no longer pinned: drop its digest"
