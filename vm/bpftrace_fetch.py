#!/usr/bin/python3
"""Fetch a current bpftrace from another Debian suite without installing anything.

    vm/bpftrace_fetch.py [--suite trixie] [--refresh]    prints the wrapper's path
    vm/bpftrace_fetch.py --suite forky                    Debian testing's (newer) bpftrace

bpftrace and the closure of its dependencies (what `apt-get install
--no-install-recommends bpftrace` would install on an empty system) are
downloaded with `apt-get download` under a private apt configuration (its own
sources.list, lists, status and cache in .cache/bpftrace/apt; the host's apt
configuration is never read or changed) and unpacked with `dpkg-deb -x` into
.cache/bpftrace/<debian version>/root.  The binary needs that suite's glibc
and libraries, so `.cache/bpftrace/<version>/bpftrace` is a wrapper that runs
it through the unpacked dynamic loader with only the unpacked library folders
(`ld.so --library-path`), i.e. the host's libraries are never mixed in.

bpftrace needs nothing else at run time here: it reads the kernel's BTF, execs
no helper (no clang, no ld) and loads no data file from /usr.

Idempotent: the suite's package lists are refreshed after LISTS_MAX_AGE; when
the suite's current bpftrace is already unpacked, only its wrapper's path is
printed.  Only the standard library is used (runs with /usr/bin/python3).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("PROCTRACE_BPFTRACE_CACHE",
                            str(REPO / ".cache" / "bpftrace"))).resolve()
MIRROR = os.environ.get("PROCTRACE_DEBIAN_MIRROR", "http://deb.debian.org/debian").rstrip("/")
SECURITY = os.environ.get("PROCTRACE_DEBIAN_SECURITY_MIRROR",
                          "http://deb.debian.org/debian-security").rstrip("/")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LISTS_MAX_AGE = 6 * 3600
DEFAULT_SUITE = "trixie"
LOADER = "ld-linux-x86-64.so.2"


class FetchError(Exception):
    """A one-line reason the fetch cannot go on."""


def log(msg: str) -> None:
    print(f"bpftrace-fetch: {msg}", file=sys.stderr, flush=True)


def run_checked(cmd: Sequence[str], cwd: Path | None = None) -> str:
    p = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        shown = [c for c in cmd if not c.startswith(("Dir::", "APT::", "Debug::", "-o"))]
        raise FetchError(f"{shlex.join(shown)} failed ({p.returncode}): {' | '.join(tail)}")
    return p.stdout


# --------------------------------------------------------------------------- apt

UNSTABLE = ("sid", "unstable", "experimental")  # suites without -updates and -security


def sources_text(suite: str) -> str:
    """The private sources.list: the suite, its -updates and its -security."""
    entries = [(MIRROR, suite)]
    if suite not in UNSTABLE:
        entries += [(MIRROR, f"{suite}-updates"), (SECURITY, f"{suite}-security")]
    return "".join(f"deb [signed-by={KEYRING}] {uri} {s} main\n" for uri, s in entries)


class PrivateApt:
    """apt-get/apt-cache with their own sources, lists, status and cache under `dir`."""

    def __init__(self, directory: Path, suite: str) -> None:
        self.dir = directory
        self.suite = suite

    def opts(self) -> list[str]:
        d = self.dir
        return [
            "-o", f"Dir::Etc::SourceList={d / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={d / 'sources.list.d'}",
            "-o", f"Dir::Etc::Preferences={d / 'preferences'}",
            "-o", f"Dir::Etc::PreferencesParts={d / 'preferences.d'}",
            "-o", f"Dir::State::Lists={d / 'lists'}",
            "-o", f"Dir::State::status={d / 'status'}",  # empty: nothing is installed
            "-o", f"Dir::Cache={d / 'cache'}",
            "-o", "APT::Architecture=amd64",
            "-o", "APT::Architectures=amd64",
            "-o", "APT::Sandbox::User=root",
            "-o", "Debug::NoLocking=1",
        ]

    def update(self, force: bool = False) -> None:
        d = self.dir
        for sub in ("sources.list.d", "preferences.d", "lists/partial", "cache/archives/partial"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "status").write_text("")
        (d / "preferences").touch()
        text = sources_text(self.suite)
        src = d / "sources.list"
        stamp = d / "lists" / ".updated"
        fresh = (src.is_file() and src.read_text() == text and stamp.is_file()
                 and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE)
        if fresh and not force:
            return
        src.write_text(text)
        log(f"apt-get update ({self.suite}; private lists in {d})")
        run_checked(["apt-get", *self.opts(), "-q", "update"])
        stamp.touch()

    def candidate(self, pkg: str) -> str:
        text = run_checked(["apt-cache", *self.opts(), "show", "--no-all-versions", pkg])
        m = re.search(r"^Version: (\S+)$", text, re.M)
        if not m:
            raise FetchError(f"no {pkg} in {self.suite}")
        return m.group(1)

    def closure(self, pkg: str, version: str) -> list[str]:
        """pkg=version and every package it needs, as `name=version` (empty status)."""
        out = run_checked(["apt-get", *self.opts(), "-s", "-q", "--no-install-recommends",
                           "install", f"{pkg}={version}"])
        return parse_simulation(out)

    def download(self, pkgs: Sequence[str], dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        run_checked(["apt-get", *self.opts(), "-q", "download", *pkgs], cwd=dest)


def parse_simulation(text: str) -> list[str]:
    """`apt-get -s install` output -> ["libc6=2.41-12", ...] (the `Inst` lines)."""
    out = []
    for m in re.finditer(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ", text, re.M):
        out.append(f"{m.group(1)}={m.group(2)}")
    if not out:
        raise FetchError("apt-get -s install listed no package to install")
    return out


def deb_file(debs: Path, pkg: str) -> Path:
    """The .deb `apt-get download` wrote for name=version."""
    name, ver = pkg.split("=", 1)
    ver_file = ver.replace(":", "%3a")
    matches = sorted(debs.glob(f"{name}_{ver_file}_*.deb"))
    if len(matches) != 1:
        raise FetchError(f"downloaded .deb for {pkg} not found in {debs}")
    return matches[0]


# --------------------------------------------------------------------------- tree

def find_loader(root: Path) -> Path:
    for rel in ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib64", "lib64"):
        p = root / rel / LOADER
        if p.exists():
            return p
    raise FetchError(f"no {LOADER} under {root}")


def library_dirs(root: Path) -> list[Path]:
    """Every folder of the unpacked tree that holds a shared library (lib*.so*: not
    gconv modules, not the loader), the multiarch folders first."""
    dirs = set()
    for p in root.rglob("*.so*"):
        if re.fullmatch(r"lib.*\.so(\.\d+)*", p.name) and (p.is_file() or p.is_symlink()):
            dirs.add(p.parent)
    first = [root / "usr/lib/x86_64-linux-gnu", root / "lib/x86_64-linux-gnu"]
    return [d for d in first if d in dirs] + sorted(d for d in dirs if d not in first)


def wrapper_text(root: Path, loader: Path, libdirs: Sequence[Path], binary: Path,
                 argv0: bool = True) -> str:
    """A shell wrapper: paths relative to its own folder (the cache may move).

    `argv0`: the loader takes --argv0 (glibc 2.33+), so bpftrace sees its own name."""
    base = root.parent

    def rel(p: Path) -> str:
        return '"$here"/' + shlex.quote(str(p.relative_to(base)))

    libpath = ":".join('"$here"/' + shlex.quote(str(d.relative_to(base))) for d in libdirs)
    name = ' --argv0 "$0"' if argv0 else ""
    return (
        "#!/bin/sh\n"
        "# bpftrace unpacked from Debian packages by vm/bpftrace_fetch.py; run through\n"
        "# the unpacked loader with the unpacked libraries only.\n"
        'here=$(dirname "$(readlink -f "$0")")\n'
        f'exec {rel(loader)} --library-path {libpath}{name} {rel(binary)} "$@"\n'
    )


def unpack(pkgs: Sequence[str], debs: Path, dest: Path) -> Path:
    """Unpack into dest/root and write dest/bpftrace; returns the wrapper."""
    root = dest / "root"
    root.mkdir(parents=True)
    for pkg in pkgs:
        run_checked(["dpkg-deb", "-x", str(deb_file(debs, pkg)), str(root)])
    binary = root / "usr" / "bin" / "bpftrace"
    if not binary.is_file():
        raise FetchError(f"{binary} missing after unpacking")
    loader = find_loader(root)
    libdirs = library_dirs(root)
    # Every library the binary needs must come from the unpacked tree.
    listing = run_checked([str(loader), "--library-path", ":".join(map(str, libdirs)),
                           "--list", str(binary)])
    missing = [ln.strip() for ln in listing.splitlines() if "not found" in ln]
    if missing:
        raise FetchError(f"unresolved libraries: {'; '.join(missing)}")
    outside = [ln.strip() for ln in listing.splitlines()
               if "=>" in ln and str(root) not in ln.split("=>", 1)[1]]
    if outside:
        raise FetchError(f"libraries resolved outside {root}: {'; '.join(outside)}")
    argv0 = "--argv0" in subprocess.run([str(loader), "--help"], capture_output=True,
                                        text=True).stdout
    wrapper = dest / "bpftrace"
    wrapper.write_text(wrapper_text(root, loader, libdirs, binary, argv0))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return wrapper


# --------------------------------------------------------------------------- main

def version_dir(version: str) -> str:
    """A Debian version as a folder name ("1:0.23.2-1" -> "0.23.2-1")."""
    return re.sub(r"[^A-Za-z0-9.+~-]", "_", version.split(":", 1)[-1])


def fetch(suite: str = DEFAULT_SUITE, refresh: bool = False) -> Path:
    apt = PrivateApt(CACHE / "apt" / suite, suite)
    apt.update(force=refresh)
    version = apt.candidate("bpftrace")
    dest = CACHE / version_dir(version)
    ready = dest / "READY.json"
    wrapper = dest / "bpftrace"
    if ready.is_file() and wrapper.is_file() and not refresh:
        return wrapper
    t0 = time.monotonic()
    pkgs = apt.closure("bpftrace", version)
    debs = CACHE / "debs"
    log(f"bpftrace {version} from {suite}: downloading {len(pkgs)} packages")
    apt.download(pkgs, debs)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    unpack(pkgs, debs, tmp)
    out = run_checked([str(tmp / "bpftrace"), "--version"]).strip()
    upstream = version.split(":", 1)[-1].split("-", 1)[0]
    if upstream not in out:
        raise FetchError(f"the unpacked bpftrace says {out!r}, expected {upstream}")
    (tmp / "READY.json").write_text(json.dumps(
        {"suite": suite, "version": version, "says": out, "packages": pkgs}, indent=1) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    for pkg in pkgs:  # unpacked: the .debs are not needed any more
        deb_file(debs, pkg).unlink()
    log(f"{out} unpacked into {dest / 'root'} in {time.monotonic() - t0:.1f} s")
    return wrapper


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--suite", default=DEFAULT_SUITE, help="Debian suite (default: trixie)")
    ap.add_argument("--refresh", action="store_true",
                    help="update the package lists and unpack again")
    args = ap.parse_args(argv)
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if shutil.which(tool) is None:
            print(f"bpftrace-fetch: {tool} not found (Debian or Ubuntu needed)", file=sys.stderr)
            return 1
    try:
        print(fetch(args.suite, args.refresh))
    except FetchError as exc:
        print(f"bpftrace-fetch: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
