"""The hang snapshot: what every live process of the tree is doing, read from /proc.

`record` takes one when --timeout fires, when it gets SIGINT, SIGTERM or SIGHUP
(before it passes the signal on to CMD) and on SIGUSR1 (then recording goes on):
one ProcState event per process (docs/format.md), read by proctrace_bcc.hang.

Bounded: at most SNAPSHOT_MAX processes and SNAPSHOT_S seconds of reading (a tree of
thousands of live processes must not hold up the stop); :class:`Snapshot` counts the
ones left out.  The root of the tree comes first, then by pid (fork order, mostly).
What it cannot see: a process that exits (or is killed, when a whole group got the
signal at once) before its turn; the other threads of a process (the thread group
leader's state, wchan and stack stand for it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from proctrace_bcc.events import ProcState, SnapshotTrigger
from proctrace_bcc.procfs import proc_state, snapshot_fds

SNAPSHOT_MAX = 2000  # processes read at most per snapshot
SNAPSHOT_S = 1.0  # and for at most this long


@dataclass(slots=True)
class Snapshot:
    states: list[ProcState] = field(default_factory=list)
    gone: int = 0  # processes that had exited by their turn
    skipped: int = 0  # left out: over SNAPSHOT_MAX or SNAPSHOT_S


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def wchan(pid: int, proc: str = "/proc") -> str | None:
    """/proc/PID/wchan: the kernel function it sleeps in (None: running, or unreadable)."""
    raw = _read(f"{proc}/{pid}/wchan")
    if raw is None:
        return None
    name = raw.strip().decode("ascii", "replace")
    return None if name in ("", "0") else name


def stack(pid: int, proc: str = "/proc") -> list[str] | None:
    """The function names of /proc/PID/stack, innermost first (``[<0>] pipe_read+0x31f/0x420``
    -> ``pipe_read``); None when unreadable."""
    raw = _read(f"{proc}/{pid}/stack")
    if raw is None:
        return None
    out: list[str] = []
    for line in raw.decode("ascii", "replace").splitlines():
        word = line.split("] ", 1)[-1].strip()
        name = word.split("+", 1)[0]
        if name:
            out.append(name)
    return out


def take(pids: Iterable[int], root: int | None, trigger: SnapshotTrigger, t0: int,
         fds: bool, proc: str = "/proc") -> Snapshot:
    """ProcStates of `pids` (timestamps: monotonic ns since `t0`), bounded as above."""
    order = sorted(pids, key=lambda p: (p != root, p))
    snap = Snapshot()
    deadline = time.monotonic() + SNAPSHOT_S
    for i, pid in enumerate(order):
        if i >= SNAPSHOT_MAX or time.monotonic() >= deadline:
            snap.skipped = len(order) - i
            break
        ts = max(0, time.monotonic_ns() - t0)
        state = proc_state(pid, proc)
        if state is None:
            snap.gone += 1
            continue
        snap.states.append(ProcState(
            ts, pid, trigger, state, wchan(pid, proc), stack(pid, proc),
            snapshot_fds(pid, proc) if fds else None))
    return snap
