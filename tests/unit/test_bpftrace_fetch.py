"""vm/bpftrace_fetch.py without the network: what it asks apt for, what it makes of apt's
answers, and the wrapper it writes (`make bpftrace-compat` runs the real thing)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vm_bpftrace_fetch",
                                                  REPO / "vm" / "bpftrace_fetch.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


fetch = _load()

# `apt-get -s --no-install-recommends install bpftrace=0.23.2-1` on an empty status (abridged)
SIMULATION = """\
NOTE: This is only a simulation!
Reading package lists...
The following NEW packages will be installed:
  bpftrace gcc-14-base libbpf1 libc6
Inst gcc-14-base (14.2.0-19 Debian:13.2/stable [amd64])
Inst libc6 (2.41-12+deb13u5 Debian-Security:13/stable-security [amd64])
Inst libbpf1 (1:1.5.0-3 Debian:13.2/stable [amd64])
Inst bpftrace (0.23.2-1 Debian:13.2/stable [amd64])
Conf gcc-14-base (14.2.0-19 Debian:13.2/stable [amd64])
Conf bpftrace (0.23.2-1 Debian:13.2/stable [amd64])
"""


def test_the_closure_is_every_inst_line_with_its_exact_version() -> None:
    assert fetch.parse_simulation(SIMULATION) == [
        "gcc-14-base=14.2.0-19", "libc6=2.41-12+deb13u5", "libbpf1=1:1.5.0-3",
        "bpftrace=0.23.2-1"]
    with pytest.raises(fetch.FetchError):
        fetch.parse_simulation("0 upgraded, 0 newly installed\n")


def test_downloaded_file_names_encode_the_epoch(tmp_path: Path) -> None:
    (tmp_path / "libbpf1_1%3a1.5.0-3_amd64.deb").touch()
    assert fetch.deb_file(tmp_path, "libbpf1=1:1.5.0-3").name == "libbpf1_1%3a1.5.0-3_amd64.deb"
    with pytest.raises(fetch.FetchError):
        fetch.deb_file(tmp_path, "libc6=2.41-12")
    assert fetch.version_dir("1:0.23.2-1") == "0.23.2-1"
    assert fetch.version_dir("0.11.3-5+deb11u1") == "0.11.3-5+deb11u1"


def test_private_sources_name_the_suite_and_only_existing_companions() -> None:
    stable = fetch.sources_text("trixie").splitlines()
    assert [ln.split()[-2] for ln in stable] == ["trixie", "trixie-updates", "trixie-security"]
    assert all(ln.startswith(f"deb [signed-by={fetch.KEYRING}] http") for ln in stable)
    assert [ln.split()[-2] for ln in fetch.sources_text("sid").splitlines()] == ["sid"]


def test_apt_runs_with_its_own_configuration_only(tmp_path: Path) -> None:
    opts = fetch.PrivateApt(tmp_path, "trixie").opts()
    paths = [o.split("=", 1)[1] for o in opts if o.startswith("Dir::")]
    assert len(paths) == 7 and all(p.startswith(str(tmp_path)) for p in paths)


def test_library_dirs_and_a_wrapper_that_runs_the_binary_through_the_loader(
        tmp_path: Path) -> None:
    root = tmp_path / "0.23.2-1" / "root"
    multiarch = root / "usr/lib/x86_64-linux-gnu"
    for rel in ("usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/llvm-19/lib/libLLVM.so.19.1",
                "usr/lib/x86_64-linux-gnu/gconv/UTF-16.so", "usr/bin/bpftrace"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    (root / "usr/lib64").mkdir()
    (root / "usr/lib64" / fetch.LOADER).symlink_to(multiarch / fetch.LOADER)
    # A stand-in loader that prints what it was asked to run.
    loader = multiarch / fetch.LOADER
    loader.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    loader.chmod(0o755)
    assert fetch.find_loader(root) == loader
    dirs = fetch.library_dirs(root)
    assert dirs == [multiarch, root / "usr/lib/llvm-19/lib"]  # not gconv, not the loader's
    wrapper = tmp_path / "0.23.2-1" / "bpftrace"
    wrapper.write_text(fetch.wrapper_text(root, loader, dirs, root / "usr/bin/bpftrace"))
    wrapper.chmod(0o755)
    link = tmp_path / "bin" / "bpftrace"  # the kernel tests run it through a symlink
    link.parent.mkdir()
    link.symlink_to(wrapper)
    out = subprocess.run([str(link), "-f", "json", "a b"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    real = os.path.realpath(tmp_path / "0.23.2-1")
    assert out == ["--library-path", f"{real}/root/usr/lib/x86_64-linux-gnu:"
                   f"{real}/root/usr/lib/llvm-19/lib", "--argv0", str(link),
                   f"{real}/root/usr/bin/bpftrace", "-f", "json", "a b"]
    old = fetch.wrapper_text(root, loader, dirs, root / "usr/bin/bpftrace", argv0=False)
    assert "--argv0" not in old  # glibc before 2.33 (bullseye's 0.11) has no --argv0
