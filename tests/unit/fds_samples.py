"""Recordings with descriptor data for the HTML report's descriptors section.

`BATS_LEAK` is a real recording (`proctrace-bcc record --fds --timeout 3
--kill-leftovers --backend bcc -- bats hang.bats`, Debian 12, bats 1.8.2, kernel
6.18) of a bats test that runs `sleep 300 &` without closing fd 3: the sleep keeps
the write end of bats' output pipe, and a forked bats that never exec'd waits on its
read end.  `write_hostile_leak` builds a small leak whose leaker's argv is hostile HTML.
"""

from __future__ import annotations

import os
from pathlib import Path

from proctrace_bcc.events import End, Event, Exec, Exit, FdInfo, FdSnapshot, Fork, Header
from tests.unit.render_samples import AMP, HOSTILE, MS, write

BATS_LEAK = Path(__file__).resolve().parents[1] / "fixtures" / "bats-leak-fds.ndjson"

PIPE_DEV = os.makedev(0, 15)
PIPE_INO = 5150


def pipe_end(fd: int, write_end: bool, inherited: bool | None = True) -> FdInfo:
    return FdInfo(fd, "pipe", PIPE_DEV, PIPE_INO, None, inherited, 1 if write_end else 0)


STD = [FdInfo(0, "char", os.makedev(1, 3), 4, None, True, 0),
       FdInfo(1, "tty", os.makedev(136, 0), 3, None, True, 1),
       FdInfo(2, "tty", os.makedev(136, 0), 3, None, True, 1)]


def hostile_leak_events() -> list[Event]:
    """sh (10) makes a pipe; `daemon HOSTILE AMP` (11) keeps its write end at fd 3 after
    sh exits; `reader` (12) still waits on the read end when the recording ends."""
    daemon_fds = [*STD, pipe_end(3, True),
                  FdInfo(4, "file", os.makedev(254, 1), 77, HOSTILE, True, 1)]
    return [
        Fork(timestamp=0, parent_pid=9, child_pid=10, parent_pgid=9, child_pgid=9, sid=9),
        Exec.from_argv(1 * MS, 10, 9, 9, ["sh", "-c", "daemon &"], fds=STD),
        Fork(timestamp=2 * MS, parent_pid=10, child_pid=11, parent_pgid=9, child_pgid=9, sid=9),
        Exec.from_argv(3 * MS, 11, 10, 9, ["daemon", HOSTILE, AMP], fds=daemon_fds),
        Fork(timestamp=4 * MS, parent_pid=10, child_pid=12, parent_pgid=9, child_pgid=9, sid=9),
        Exec.from_argv(5 * MS, 12, 10, 9, ["reader"],
                       fds=[pipe_end(0, False, False), *STD[1:]]),
        Exit(timestamp=6 * MS, pid=10, ppid=9, pgid=9, exit_code=0),
        FdSnapshot(timestamp=9 * MS, pid=11, fds=daemon_fds),
        FdSnapshot(timestamp=9 * MS, pid=12, fds=[pipe_end(0, False, None), *STD[1:]]),
        End(timestamp=10 * MS, reason="timeout", running=[11, 12], exit_status=None, lost=0),
    ]


def write_hostile_leak(path: Path) -> Path:
    header = Header(version="0.1.0", backend="bcc", kernel="6.18.0", hostname="ci",
                    command=["sh", "-c", "daemon &"], root_pid=10,
                    start_time="2026-01-01T00:00:00Z", options={"fds": True})
    return write(path, hostile_leak_events(), header)
