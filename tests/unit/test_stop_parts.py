"""The parts of ending a run (issue 14) that need no kernel: the hang snapshot's /proc
reading (snapshot.py, on a fake /proc), the cgroup's finding (cgroup.py), who sent a
signal (events.Signal.generated) and the BPF filter's signal set (abi)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from proctrace_bcc import cgroup, snapshot
from proctrace_bcc.backends import abi
from proctrace_bcc.events import Signal, SnapshotTrigger
from proctrace_bcc.procfs import proc_state

# The schema's list (docs/format.md, Signal).
FATAL = {"SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL",
         "SIGSEGV", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGXCPU", "SIGXFSZ",
         "SIGSYS"}


def test_the_bpf_filter_passes_exactly_the_fatal_signals() -> None:
    passed = {signal.Signals(n).name for n in range(1, 32)
              if (abi.PT_FATAL_SIGNALS >> n) & 1}
    assert passed == FATAL


def _proc(tmp_path: Path, pid: int, stat: str, wchan: str | None, stack: str | None) -> None:
    d = tmp_path / str(pid)
    d.mkdir()
    (d / "stat").write_text(stat)
    if wchan is not None:
        (d / "wchan").write_text(wchan)
    if stack is not None:
        (d / "stack").write_text(stack)


def test_snapshot_reads_state_wchan_and_stack(tmp_path: Path) -> None:
    _proc(tmp_path, 10, "10 (ba) sh) S 1 10 10 0 -1", "pipe_read",
          "[<0>] pipe_read+0x31f/0x420\n[<0>] vfs_read+0x2b0/0x2f0\n[<0>] ksys_read+0x73/0xf0\n")
    _proc(tmp_path, 11, "11 (sleep) R 10 10 10 0 -1", "0", None)
    snap = snapshot.take([11, 10, 12], 10, SnapshotTrigger.TIMEOUT, 0, fds=False,
                         proc=str(tmp_path))
    assert [(s.pid, s.state, s.wchan, s.stack, s.fds) for s in snap.states] == [
        (10, "S", "pipe_read", ["pipe_read", "vfs_read", "ksys_read"], None),
        (11, "R", None, None, None),
    ]
    assert snap.gone == 1 and snap.skipped == 0
    assert all(s.trigger == "timeout" for s in snap.states)
    assert proc_state(10, str(tmp_path)) == "S"  # a comm holding ") " is skipped whole


def test_snapshot_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for pid in range(1, 6):
        _proc(tmp_path, pid, f"{pid} (x) S 1", None, None)
    monkeypatch.setattr(snapshot, "SNAPSHOT_MAX", 3)
    snap = snapshot.take(range(1, 6), 5, SnapshotTrigger.REQUEST, 0, fds=False,
                         proc=str(tmp_path))
    assert [s.pid for s in snap.states] == [5, 1, 2]  # the root first
    assert snap.skipped == 2


def test_cgroup2_mount_and_own_path(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
                      "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
                      "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n")
    assert cgroup._cgroup2_mount(str(mounts)) == Path("/sys/fs/cgroup/unified")
    own = tmp_path / "cgroup"
    own.write_text("4:memory:/a\n0::/user.slice/session-1.scope\n")
    assert cgroup._own_path(str(own)) == "/user.slice/session-1.scope"


def test_who_sent_a_signal() -> None:
    # kill(2) by another process: si_code SI_USER (0)
    s = Signal.generated(5, 100, 15, 0, 200, "kill", False)
    assert (s.sender_pid, s.sender_comm) == (200, "kill")
    # a fault (SEGV_MAPERR = 1) or SI_KERNEL (0x80): the kernel
    assert Signal.generated(5, 100, 11, 1, 100, "a.out", False).sender_pid is None
    assert Signal.generated(5, 100, 9, 0x80, 300, "kswapd0", False).sender_comm is None
    # SIGPIPE a process "sends" itself (a write to a pipe without readers): the kernel
    assert Signal.generated(5, 100, 13, 0, 100, "yes", False).sender_pid is None
    # but SIGPIPE from another process is that process's
    assert Signal.generated(5, 100, 13, 0, 7, "sh", False).sender_pid == 7
    # the recorder's cgroup.kill: SI_USER from the recorder
    assert Signal.generated(5, 100, 9, 0, 42, "python3", True).by_recorder
