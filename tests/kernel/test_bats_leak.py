"""The bats hang, for real: Debian's bats, a test that backgrounds a long sleep.

bats writes its TAP stream through a pipe that every test inherits as fd 3; a
background process that keeps fd 3 keeps the pipe's write end open, so the reader
(a forked copy of bats, feeding the formatter) never sees end-of-file and bats hangs.
We record `bats` with `--fds --timeout`, then `analyze -d fds` must name the sleep,
fd 3, the pipe and the bats process waiting on it.  The control run closes fd 3
(`sleep 300 3>&- &`): bats finishes, the sleep lives on, and no leak is reported.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proctrace_bcc.read import read_recording
from proctrace_bcc.tree import Process, build_tree
from tests.support import scaled

from .conftest import REPO, Result
from .endings import image_cmdline, kill_if

pytestmark = pytest.mark.kernel

TIMEOUT_S = f"{scaled(6):g}"  # bats must have started its test by then (slow under emulation)

LEAK_TEST = """\
@test "a background sleep keeps fd 3" {
  sleep 300 &
  echo $! > "$LEAK_PIDFILE"
}
"""
CONTROL_TEST = """\
@test "a background sleep closes fd 3" {
  sleep 300 3>&- &
  echo $! > "$LEAK_PIDFILE"
}
"""


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def _record(tmp_path: Path, backend: str, cmd: list[str], *extra: str,
            env: dict[str, str]) -> Result:
    """Like conftest.run_record, but CMD's output goes to files, not to pipes we wait on.

    On --timeout the recorder ends only the root (bats); bats' output validator and its
    formatter live on, blocked by the leaked pipe, and they hold the recorder's stdout:
    capturing it through a pipe would make this test hang exactly like bats does.
    """
    out = tmp_path / f"rec-{backend}.ndjson"
    argv = [sys.executable, "-m", "proctrace_bcc", "record", "-q", "-o", str(out),
            "--backend", backend, *extra, "--", *cmd]
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO)
    e.update(env)
    so_path, se_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(so_path, "wb") as so, open(se_path, "wb") as se:
        p = subprocess.run(argv, stdout=so, stderr=se, stdin=subprocess.DEVNULL, env=e,
                           timeout=scaled(120))
    stdout, stderr = so_path.read_text(), se_path.read_text()
    assert out.exists(), f"no recording; stderr: {stderr}"
    rec = read_recording(out)
    return Result(p.returncode, rec, build_tree(rec.events, rec.header), stdout, stderr, out)


@contextlib.contextmanager
def _bats_run(tmp_path: Path, backend: str, body: str) -> Iterator[tuple[Result, int]]:
    """Record bats on a one-test file; yield the result and the sleep's pid.

    Afterwards kill the sleep, then whatever else of the recording is still running
    (bats' validator and formatter in the hang case), each only if its pid still runs
    the command the recording says.
    """
    if shutil.which("bats") is None:
        pytest.skip("bats is not installed (Debian package `bats`)")
    test_file = tmp_path / "hang.bats"
    test_file.write_text(body)
    pidfile = tmp_path / "sleep.pid"
    leftovers: list[tuple[int, str]] = []
    try:
        r = _record(tmp_path, backend, ["bats", str(test_file)], "--fds", "--timeout",
                    TIMEOUT_S, env={"LEAK_PIDFILE": str(pidfile)})
        leftovers = [(p.pid, image_cmdline(p)) for p in r.procs() if p.exit is None]
        assert pidfile.exists(), f"the bats test did not run: {r.stdout} {r.stderr}"
        yield r, int(pidfile.read_text())
    finally:
        if pidfile.exists():
            with contextlib.suppress(ValueError):
                kill_if(int(pidfile.read_text()), "sleep 300")
        for pid, cmdline in leftovers:
            kill_if(pid, cmdline)


def _analyze_fds(path: Path) -> str:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO)
    p = subprocess.run([sys.executable, "-m", "proctrace_bcc", "analyze", "-i", str(path),
                        "-d", "fds"], capture_output=True, text=True, timeout=scaled(60), env=e)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _sleep(r: Result, pid: int) -> Process:
    (sleep,) = [p for p in r.tree.find(pid) if p.execs]
    assert sleep.command == "sleep 300"
    assert sleep.exit is None, "the sleep should outlive the recording"
    assert sleep.fd_snapshot is not None, "no /proc snapshot of the sleep at the end"
    return sleep


def test_bats_leak_names_the_sleep_fd3_the_pipe_and_the_waiting_bats(
        tmp_path: Path, backend: str) -> None:
    with _bats_run(tmp_path, backend, LEAK_TEST) as (r, sleep_pid):
        end = r.rec.end
        assert end is not None and end.reason == "timeout", "bats should hang until --timeout"
        sleep = _sleep(r, sleep_pid)
        # Ground truth from the live process: its fd 3 is a pipe, opened for writing.
        target = os.readlink(f"/proc/{sleep_pid}/fd/3")
        assert target.startswith("pipe:["), target
        ino = os.stat(f"/proc/{sleep_pid}/fd/3").st_ino
        assert target == f"pipe:[{ino}]"
        # The recording agrees: in the snapshot at the end, and at the exec of sleep
        # (for backends that read the descriptor table at exec).
        assert sleep.fd_snapshot is not None
        (end3,) = [f for f in sleep.fd_snapshot.fds if f.fd == 3]
        assert (end3.kind, end3.ino, (end3.flags or 0) & 3) == ("pipe", ino, 1)
        if backend == "bcc":
            (fd3,) = [f for f in sleep.execs[-1].fds or [] if f.fd == 3]
            assert (fd3.kind, fd3.ino, fd3.inherited, (fd3.flags or 0) & 3) == (
                "pipe", ino, True, 1)
        # Who reads that pipe at the end, from the raw snapshots (not from the analysis):
        # a forked copy of bats that never exec'd (bats' output validator).
        readers = [p for p in r.procs() if p.exit is None and p.fd_snapshot is not None
                   and any(f.kind == "pipe" and f.ino == ino and (f.flags or 0) & 3 == 0
                           for f in p.fd_snapshot.fds)]
        assert len(readers) == 1, [(p.pid, p.command) for p in readers]
        (reader,) = readers
        assert not reader.execs and "bats" in reader.command
        root = r.root
        assert reader.parent is root

        out = _analyze_fds(r.path)
        assert "Leaked descriptors: 1\n" in out, out
        assert (f"sleep 300 (pid {sleep_pid}) holds fd 3, a pipe (write end, pipe:[{ino}]) "
                f"that bats (pid {root.pid}) opened; it inherited it through ") in out, out
        assert f"bats (pid {reader.pid}, fd 0) is still waiting on the read end of " \
               f"pipe:[{ino}]." in out, out
        # It held it long after bats-exec-test, which it inherited it from, had exited.
        test = sleep.parent
        assert test is not None and test.exit is not None
        assert "sleep was still holding it when the recording ended, " in out, out
        assert (f" after bats-exec-test (pid {test.pid}), which it inherited it from, had "
                "exited at +") in out, out
        # The table marks the leaker and the waiting reader on that pipe.
        table = out.split(f"\npipe:[{ino}]  opened by bats (pid {root.pid})", 1)[1]
        table = table.split("\n\n", 1)[0]
        assert "sleep 300   <- leaked" in table and "<- waiting" in table, out

        # The culprit is the right one: the waiting bats outlived the recorder, and
        # killing the sleep (nothing else) lets it see end-of-file and finish.
        assert _running(reader.pid), "the waiting bats should still be blocked"
        os.kill(sleep_pid, signal.SIGKILL)
        deadline = time.monotonic() + scaled(10)
        while _running(reader.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(reader.pid), "bats still waits after the sleep was killed"


def test_bats_control_closing_fd3_reports_no_leak(tmp_path: Path, backend: str) -> None:
    with _bats_run(tmp_path, backend, CONTROL_TEST) as (r, sleep_pid):
        assert "ok 1 a background sleep closes fd 3" in r.stdout, r.stdout
        sleep = _sleep(r, sleep_pid)
        assert not os.path.exists(f"/proc/{sleep_pid}/fd/3")
        assert sleep.fd_snapshot is not None
        fds = {f.fd: f.kind for f in sleep.fd_snapshot.fds}
        assert 3 not in fds and fds.get(4) == "file", fds  # bats' output file stays at fd 4
        out = _analyze_fds(r.path)
        assert "Leaked descriptors: none" in out, out
        assert "<- leaked" not in out
