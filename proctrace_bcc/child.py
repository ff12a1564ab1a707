"""CMD, the recorder's child: run as the user behind sudo, passed our signals, ended.

Also ends what is left of its tree (`record --kill-leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from proctrace_bcc.errors import RecorderError

TERMINATE_S = 5.0  # how long CMD has to exit after SIGTERM before SIGKILL
LEFTOVER_S = 2.0  # the same for leftovers of the tree, per signal


@dataclass(slots=True)
class Invoker:
    """Who CMD runs as: the user behind sudo unless --as-root."""

    uid: int | None = None
    gid: int | None = None
    groups: list[int] | None = None
    env: dict[str, str] | None = None

    @classmethod
    def from_env(cls, as_root: bool) -> Invoker:
        sudo_uid = os.environ.get("SUDO_UID")
        if as_root or os.geteuid() != 0 or not sudo_uid:
            return cls()
        uid = int(sudo_uid)
        try:
            pw = pwd.getpwuid(uid)
        except KeyError:
            raise RecorderError(f"SUDO_UID={uid} is not a known user") from None
        gid = int(os.environ.get("SUDO_GID", pw.pw_gid))
        env = dict(os.environ)
        env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
        return cls(uid, gid, os.getgrouplist(pw.pw_name, gid), env)


class Child:
    """CMD, started as `inv` says; it inherits what it would have inherited from us."""

    def __init__(self, command: list[str], inv: Invoker) -> None:
        try:
            self.proc = subprocess.Popen(
                command, user=inv.uid, group=inv.gid, extra_groups=inv.groups, env=inv.env,
                close_fds=False,
            )
        except FileNotFoundError:
            raise RecorderError(f"command not found: {command[0]}") from None
        except PermissionError:
            raise RecorderError(f"permission denied: {command[0]}") from None
        self.pid = self.proc.pid

    def running(self) -> bool:
        """Not yet reaped (poll() reaps it once it has ended)."""
        return self.proc.poll() is None

    def forward(self, signum: int) -> None:
        """Pass a signal the recorder got on to CMD, unless our terminal sent it CMD too."""
        if self.running() and not _terminal_sent(signum):
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def end(self) -> None:
        """SIGTERM CMD if it still runs; SIGKILL after TERMINATE_S."""
        if not self.running():
            return
        self.proc.terminate()
        try:
            self.proc.wait(TERMINATE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def status(self) -> int:
        """CMD's exit status as a shell reports it (waits for CMD)."""
        return exit_status(self.proc.wait())


def exit_status(returncode: int) -> int:
    """Popen's returncode as a shell reports it (128+N when killed by signal N)."""
    return 128 - returncode if returncode < 0 else returncode


def _terminal_sent(signum: int) -> bool:
    """True when a Ctrl-C from our terminal already reached CMD (same foreground group)."""
    if signum != signal.SIGINT:
        return False
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except OSError:
        return False


def end_processes(pids: list[int]) -> None:
    """SIGTERM `pids`, then SIGKILL those still there after LEFTOVER_S."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + LEFTOVER_S
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists()]
            time.sleep(0.02)
        if not pids:
            return
