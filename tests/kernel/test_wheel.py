"""The built wheel records: `pip wheel` of the project, installed into a fresh venv
(from /usr/bin/python3 with --system-site-packages, for Debian's bcc), runs
`record -- true` and `analyze` from that install only (cwd outside the repo, no
source tree on the path).

The dependencies (orjson, typer and theirs) are fetched as wheels once into
.cache/test-wheels/ and installed from there without an index afterwards.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

from proctrace_bcc.events import Exec
from proctrace_bcc.read import read_recording
from tests.support import scaled, unavailable

from .conftest import REPO

pytestmark = pytest.mark.kernel

SYSTEM_PYTHON = Path("/usr/bin/python3")
DEPS_CACHE = REPO / ".cache" / "test-wheels"
# The wheel's dependencies, as the project declares them.
DEPS: list[str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
# What the wheel is built from: the package (its bpf_programs link included) and metadata.
SOURCES = ["pyproject.toml", "README.md", "proctrace_bcc", "bpf_programs"]


def _run(argv: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=scaled(timeout), stdin=subprocess.DEVNULL)


def _ok(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 0, f"{p.args}: rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def _build_wheel(tmp: Path) -> Path:
    """A copy of the sources (not the working tree: no build/ or egg-info left there)."""
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        p = REPO / name
        if p.is_dir() and not p.is_symlink():
            shutil.copytree(p, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / name, follow_symlinks=False)
    out = tmp / "dist"
    _ok(_run([str(REPO / ".venv" / "bin" / "python"), "-m", "pip", "wheel", "-q", "--no-deps",
              "--no-build-isolation", "-w", str(out), str(src)], cwd=tmp))
    (wheel,) = out.glob("proctrace_bcc-*.whl")
    return wheel


def _dependency_wheels(pip: Path, tmp: Path) -> None:
    stamp = DEPS_CACHE / (".complete-" + hashlib.sha256(" ".join(DEPS).encode()).hexdigest()[:16])
    if stamp.exists():
        return
    DEPS_CACHE.mkdir(parents=True, exist_ok=True)
    p = _run([str(pip), "wheel", "-q", "-w", str(DEPS_CACHE), *DEPS], cwd=tmp, timeout=300)
    if p.returncode != 0:
        unavailable("kernel", f"cannot fetch {', '.join(DEPS)} as wheels: {p.stderr.strip()[-300:]}")
    stamp.touch()


def test_installed_wheel_records_and_analyzes(tmp_path: Path) -> None:
    if _run([str(SYSTEM_PYTHON), "-c", "import bcc"], cwd=tmp_path).returncode != 0:
        unavailable("kernel", f"{SYSTEM_PYTHON} cannot import bcc (apt-get install python3-bpfcc)")
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for prog in ("proctrace.bpf.c", "proctrace.h", "proctrace.bt"):
        assert f"proctrace_bcc/bpf_programs/{prog}" in names, sorted(names)

    venv = tmp_path / "venv"
    _ok(_run([str(SYSTEM_PYTHON), "-m", "venv", "--system-site-packages", str(venv)], cwd=tmp_path))
    py, pip = venv / "bin" / "python", venv / "bin" / "pip"
    _dependency_wheels(pip, tmp_path)
    _ok(_run([str(pip), "install", "-q", "--no-index", "--find-links", str(DEPS_CACHE),
              str(wheel)], cwd=tmp_path))

    work = tmp_path / "work"  # outside the repo
    work.mkdir()
    where = _ok(_run([str(py), "-c", "import proctrace_bcc.programs as p, sys; "
                      "print(p.__file__); print(p.program_path('proctrace.bpf.c')); "
                      "print(sys.path)"], cwd=work)).splitlines()
    assert Path(where[0]).is_relative_to(venv), where
    assert Path(where[1]).is_relative_to(venv), where
    assert str(REPO) not in where[2], where

    cli = str(venv / "bin" / "proctrace-bcc")
    rec = work / "rec.ndjson"
    _ok(_run([cli, "record", "-q", "--backend", "bcc", "-o", str(rec), "--", "true"], cwd=work))
    recording = read_recording(rec)
    assert recording.header is not None and recording.header.backend == "bcc"
    root = recording.header.root_pid
    assert any(isinstance(e, Exec) and e.pid == root for e in recording.events), recording.events
    out = _ok(_run([cli, "analyze", "-i", str(rec)], cwd=work))
    assert "true" in out, out
