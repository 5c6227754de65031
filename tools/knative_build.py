"""Build Knative's data plane (queue-proxy, broker ingress and filter, IMC dispatcher) from the pinned tags.

`make knative-binaries` runs this with the Go toolchain from requirements/go.txt. Offline: each release's tag
archive carries its `vendor/` tree, so `go build -mod=vendor` downloads nothing. The archive comes from
KNATIVE_SRC (a folder holding `<repo>-knative-v<version>.tar.gz`, as CI's .ci/run sets it) or else from the
repository's tag archive on GitHub, and its tree is checked against the digest recorded below before anything
in it is built or even unpacked.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Binary:
    name: str
    repository: str
    package: str


BINARIES = (
    Binary("queue-proxy", "serving", "./cmd/queue"),
    Binary("broker-ingress", "eventing", "./cmd/broker/ingress"),
    Binary("broker-filter", "eventing", "./cmd/broker/filter"),
    Binary("imc-dispatcher", "eventing", "./cmd/in_memory/channel_dispatcher"),
)

# The tree digest (tree_digest below) of each tag the Makefile pins, with the tag's commit for the reader.
# The digest is of the files, not of the archive's bytes, so a tag archive GitHub compresses differently still
# matches. A pin without a digest here is refused: compute it once from a trusted copy with
# `python -m tools.knative_build --digest ARCHIVE` and add it.
TREE_DIGESTS = {
    # knative/serving knative-v1.22.1, commit 3bd82a6177c278b1192abee1b3ca39daf25c3f35
    "serving-knative-v1.22.1": "d09944c2d03fb1084531f6b604e2f847946479ad71c77e719a4166225fbb6808",
    # knative/eventing knative-v1.22.2, commit 532b01f0cb2ce7bed271204697081e4264385531
    "eventing-knative-v1.22.2": "02a0a4c4b9bf08d8c139ec06312fb5b315fae9a020ba475c1d126d457429bb0c",
}


class BuildError(Exception):
    """What went wrong and what to do about it, for the user."""


def archive_name(repository: str, version: str) -> str:
    return f"{repository}-knative-v{version}"


def tree_digest(archive: Path) -> str:
    """sha256 over the archive's tree: each entry's full path, type, executable bit and content (or link target),
    in path order. Independent of compression, entry order and the archiver's umask; every entry that unpacking
    creates is covered, so a verified archive unpacks to exactly the recorded tree."""
    entries: list[tuple[str, bytes]] = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.type in (tarfile.XGLTYPE, tarfile.XHDTYPE):  # pax headers: metadata, not entries
                continue
            if member.isdir():
                entries.append((member.name.rstrip("/"), b"d"))
            elif member.issym():
                entries.append((member.name, b"l" + member.linkname.encode()))
            elif member.isfile():
                file = tar.extractfile(member)
                assert file is not None  # a regular file always has content to read
                kind = b"x" if member.mode & 0o100 else b"f"
                entries.append((member.name, kind + hashlib.sha256(file.read()).digest()))
            else:
                raise BuildError(f"{archive}: unexpected entry {member.name} (type {member.type!r})")
    digest = hashlib.sha256()
    for path, record in sorted(entries):
        digest.update(path.encode() + b"\0" + record + b"\n")
    return digest.hexdigest()


def fetch(repository: str, version: str, downloads: Path) -> Path:
    """The tag archive: KNATIVE_SRC's copy if it holds one, else downloaded from GitHub into the cache."""
    name = archive_name(repository, version)
    source = os.environ.get("KNATIVE_SRC")
    if source:
        archive = Path(source) / f"{name}.tar.gz"
        if not archive.is_file():
            raise BuildError(f"KNATIVE_SRC={source} holds no {archive.name}; unset KNATIVE_SRC to download it")
        return archive
    archive = downloads / f"{name}.tar.gz"
    if not archive.is_file():
        url = f"https://github.com/knative/{repository}/archive/refs/tags/knative-v{version}.tar.gz"
        print(f"==> downloading {url}", flush=True)
        downloads.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(".part")
        try:
            with urllib.request.urlopen(url, timeout=120) as response, partial.open("wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as error:
            raise BuildError(
                f"cannot download {url} ({error}); set KNATIVE_SRC to a folder holding {archive.name}"
            ) from error
        partial.rename(archive)
    return archive


def verified(archive: Path, name: str) -> None:
    expected = TREE_DIGESTS.get(name)
    if expected is None:
        raise BuildError(
            f"no recorded tree digest for {name} in tools/knative_build.py: pin a version listed there "
            f"({', '.join(TREE_DIGESTS)}) or record this one's"
        )
    actual = tree_digest(archive)
    if actual != expected:
        raise BuildError(f"{archive}: tree digest {actual} is not the recorded {expected} for {name}; not building it")


def build(go: Path, serving: str, eventing: str, target: Path, downloads: Path) -> Path:
    """The four binaries in `target` (kept), built in a folder beside it (deleted after)."""
    missing = [b for b in BINARIES if not (target / b.name).is_file()]
    if not missing:
        print(f"==> Knative binaries already built in {target}")
        return target
    work = target.parent / "build"
    shutil.rmtree(work, ignore_errors=True)
    versions = {"serving": serving, "eventing": eventing}
    environment = {
        **os.environ,
        "GOFLAGS": "-mod=vendor",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GOCACHE": str(work / "gocache"),
        "GOPATH": str(work / "gopath"),
    }
    target.mkdir(parents=True, exist_ok=True)
    try:
        for repository in sorted({b.repository for b in missing}, reverse=True):
            name = archive_name(repository, versions[repository])
            archive = fetch(repository, versions[repository], downloads)
            print(f"==> verifying {archive}", flush=True)
            verified(archive, name)
            with tarfile.open(archive, "r:gz") as tar:
                # The tree is verified entry by entry; the "data" filter (Python >= 3.11.4) refuses unsafe
                # entries as well where it exists (Debian 12's 3.11.2 lacks it).
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(work / "src", filter="data")
                else:
                    tar.extractall(work / "src")  # noqa: S202 (every entry verified against the recorded digest)
            tree = work / "src" / name
            for binary in (b for b in missing if b.repository == repository):
                print(
                    f"==> go build {binary.package} ({repository} {versions[repository]}) -> {binary.name}", flush=True
                )
                started = time.monotonic()
                subprocess.run(
                    [str(go), "build", "-trimpath", "-o", str(target / binary.name), binary.package],
                    cwd=tree,
                    env=environment,
                    check=True,
                )
                print(f"    {time.monotonic() - started:.0f} s", flush=True)
    except subprocess.CalledProcessError as error:
        raise BuildError(f"go build failed ({error}); the output above says why") from error
    finally:
        # The Go build cache grows to about 1.4 GB and serves no later run; the binaries are all we keep.
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--go", type=Path, help="the go executable (make knative-binaries passes the locked one)")
    parser.add_argument("--serving", help="the serving version (KNATIVE_SERVING_VERSION)")
    parser.add_argument("--eventing", help="the eventing version (KNATIVE_EVENTING_VERSION)")
    parser.add_argument("--bin-dir", type=Path, help="where the binaries go (KNATIVE_REAL_BIN)")
    parser.add_argument("--downloads", type=Path, help="where downloaded tag archives are kept")
    parser.add_argument("--digest", type=Path, metavar="ARCHIVE", help="print ARCHIVE's tree digest and exit")
    args = parser.parse_args()
    try:
        if args.digest:
            print(tree_digest(args.digest))
            return 0
        if not (args.go and args.serving and args.eventing and args.bin_dir and args.downloads):
            parser.error("--go, --serving, --eventing, --bin-dir and --downloads are required (make knative-binaries)")
        started = time.monotonic()
        target = build(args.go, args.serving, args.eventing, args.bin_dir, args.downloads)
    except BuildError as error:
        print(f"knative-binaries: {error}", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in target.iterdir()) / 1e6
    print(f"==> {len(BINARIES)} binaries in {target} ({size:.0f} MB, {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
