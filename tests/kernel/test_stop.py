"""Ending a run (issue 14): atomic, recorded, with a hang snapshot.

- `--timeout --kill-leftovers` stops the whole tree at once (cgroup freeze, then
  signals): a script's next step never runs; the recorder's Signal events and every
  Exit are in the recording;
- (the hang snapshots of a hung bats and a hung make: test_leak_endings.py)
- SIGUSR1 takes a snapshot and recording goes on;
- a Signal event names the sender of an external `kill -TERM`.

Both backends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proctrace_bcc.events import Exit, ProcState, Signal
from proctrace_bcc.read import read_recording
from tests.support import scaled

from .conftest import REPO, Result, run_record

pytestmark = pytest.mark.kernel


def _states(r: Result) -> list[ProcState]:
    return [e for e in r.rec.events if isinstance(e, ProcState)]


def _signals(r: Result) -> list[Signal]:
    return [e for e in r.rec.events if isinstance(e, Signal)]


def _exited(r: Result) -> set[int]:
    return {e.pid for e in r.rec.events if isinstance(e, Exit)}


def test_kill_leftovers_stops_the_next_step(tmp_path: Path, backend: str) -> None:
    after = tmp_path / "after.txt"
    r = run_record(tmp_path, backend, ["bash", "-c", f"sleep 30; echo step 2 ran > {after}"],
                   "--timeout", f"{scaled(3):g}", "--kill-leftovers")
    assert r.rc == 124
    time.sleep(0.5)  # a step 2 that escaped would have written by now
    assert not after.exists()
    pids = {p.pid for p in r.procs()}
    assert len(pids) == 2  # bash and sleep
    assert _exited(r) >= pids  # every process of the tree has its Exit
    sent = {s.pid for s in _signals(r) if s.by_recorder and s.signal == signal.SIGTERM}
    assert sent == pids
    assert all(s.sender_pid is not None for s in _signals(r))
    assert {st.pid for st in _states(r) if st.trigger == "timeout"} == pids


def _recorder(tmp_path: Path, backend: str,
              cmd: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / "rec.ndjson"
    argv = [sys.executable, "-m", "proctrace_bcc", "record", "-q", "--backend", backend, "-o",
            str(out), "--", *cmd]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    err = (tmp_path / "stderr.txt").open("wb")
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                            env=env), out


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + scaled(60)
    while not (path.exists() and path.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_sigusr1_snapshot_keeps_recording(tmp_path: Path, backend: str) -> None:
    go = tmp_path / "go"
    started = tmp_path / "started"
    cmd = ["sh", "-c", f"echo $$ > {started}; while [ ! -e {go} ]; do sleep 0.1; done; "
           "sleep 0.2; echo done"]
    p, out = _recorder(tmp_path, backend, cmd)
    _wait_for(started)
    p.send_signal(signal.SIGUSR1)
    time.sleep(scaled(1))
    go.touch()
    assert p.wait(timeout=scaled(60)) == 0
    rec = read_recording(out)
    root = int(started.read_text())
    sts = [e for e in rec.events if isinstance(e, ProcState)]
    assert [s.pid for s in sts if s.trigger == "request"][:1] == [root]
    snap_at = min(s.timestamp for s in sts)
    # recording went on: the tree's later processes and exits are there
    later = [e for e in rec.events if isinstance(e, Exit) and e.timestamp > snap_at]
    assert root in {e.pid for e in later}
    assert rec.end is not None and rec.end.reason == "exited"


def test_signal_event_names_an_external_sender(tmp_path: Path, backend: str) -> None:
    pidfile = tmp_path / "sleep.pid"
    cmd = ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait; exit 0"]
    p, out = _recorder(tmp_path, backend, cmd)
    _wait_for(pidfile)
    victim = int(pidfile.read_text())
    killer = subprocess.Popen(["kill", "-TERM", str(victim)])
    killer.wait()
    assert p.wait(timeout=scaled(60)) == 0
    rec = read_recording(out)
    sigs = [e for e in rec.events if isinstance(e, Signal) and e.pid == victim]
    assert [(s.signal, s.sender_pid, s.sender_comm, s.by_recorder) for s in sigs] == [
        (signal.SIGTERM, killer.pid, "kill", False)]
