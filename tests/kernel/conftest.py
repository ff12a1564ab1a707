"""Fixtures for the kernel tests: run the real recorder as a subprocess."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from proctrace_bcc.read import Recording, read_recording
from proctrace_bcc.tree import Process, ProcessTree, build_tree
from tests.support import scaled

REPO = Path(__file__).resolve().parents[2]
BACKENDS = ["bcc", "bpftrace"]


def _use_test_bpftrace(path: str) -> None:
    """PROCTRACE_TEST_BPFTRACE=PATH: every bpftrace this suite starts is PATH (e.g. a
    newer release, `make bpftrace-compat`): a folder holding a `bpftrace` link to it
    goes first on PATH, which the recorders started here and in-process lookups inherit."""
    target = Path(path).resolve()
    if not (target.is_file() and os.access(target, os.X_OK)):
        raise pytest.UsageError(f"PROCTRACE_TEST_BPFTRACE={path} is not an executable file")
    d = tempfile.mkdtemp(prefix="proctrace-test-bpftrace-")
    atexit.register(shutil.rmtree, d, True)
    Path(d, "bpftrace").symlink_to(target)
    os.environ["PATH"] = d + os.pathsep + os.environ.get("PATH", "")


if os.environ.get("PROCTRACE_TEST_BPFTRACE"):
    _use_test_bpftrace(os.environ["PROCTRACE_TEST_BPFTRACE"])


@dataclass
class Result:
    rc: int
    rec: Recording
    tree: ProcessTree
    stdout: str
    stderr: str
    path: Path

    @property
    def root(self) -> Process:
        assert self.rec.header is not None
        want = self.rec.header.root_pid
        roots = [p for p in self.tree.processes if p.pid == want and p.fork_time is not None]
        assert roots, f"root pid {want} not in tree; roots={[(p.pid, p.command) for p in self.tree.roots]}"
        return roots[0]

    def procs(self) -> list[Process]:
        return list(self.root.walk())

    def by_command(self, prefix: str) -> list[Process]:
        """Processes whose own last exec starts with prefix (not inherited commands)."""
        return [p for p in self.procs() if p.execs and p.command.startswith(prefix)]

    def execs(self) -> list[list[str]]:
        return [list(e.argv or []) for p in self.procs() for e in p.execs]


Recorder = Callable[..., Result]


def run_record(tmp_path: Path, backend: str, cmd: Sequence[str], *extra: str,
               timeout: float = 120, env: dict[str, str] | None = None,
               prefix: Sequence[str] = ()) -> Result:
    out = tmp_path / f"rec-{backend}.ndjson"
    argv = [*prefix, sys.executable, "-m", "proctrace_bcc", "record", "-q", "-o", str(out),
            "--backend", backend, *extra, "--", *cmd]
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO)
    if env:
        e.update(env)
    # Files, not pipes: a process left running by CMD keeps its copies of
    # stdout/stderr open, and waiting for a pipe's EOF would wait for it.
    so, se = tmp_path / f"stdout-{backend}.txt", tmp_path / f"stderr-{backend}.txt"
    with so.open("wb") as fo, se.open("wb") as fe:
        p = subprocess.run(argv, stdout=fo, stderr=fe, timeout=scaled(timeout), env=e,
                           stdin=subprocess.DEVNULL)
    stdout, stderr = so.read_text(errors="replace"), se.read_text(errors="replace")
    assert out.exists(), f"no recording; stderr: {stderr}"
    rec = read_recording(out)
    return Result(p.returncode, rec, build_tree(rec.events, rec.header), stdout, stderr, out)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def record(tmp_path: Path, backend: str) -> Recorder:
    def _record(cmd: Sequence[str], *extra: str, **kw: object) -> Result:
        return run_record(tmp_path, backend, cmd, *extra, **kw)  # type: ignore[arg-type]

    return _record
