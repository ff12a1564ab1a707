"""CMD, the recorder's child: run as the user behind sudo, passed our signals, ended.

Also ends what is left of its tree (`record --kill-leftovers`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from proctrace_bcc.cgroup import Tree
from proctrace_bcc.errors import ProctraceError, RecorderError
from proctrace_bcc.safe_open import Creds

TERMINATE_S = 5.0  # how long CMD has to exit after SIGTERM before SIGKILL
LEFTOVER_S = 2.0  # the same for leftovers of the tree, per signal


@dataclass(slots=True)
class Invoker:
    """Who CMD runs as: the user behind sudo unless --as-root (then uid is None).

    `env` is CMD's environment: the recorder's as it was when this was made, before
    a backend adds its own variables (BCC_KERNEL_SOURCE) to ours; under sudo with the
    user's HOME, USER and LOGNAME.  `user` is the user behind sudo, --as-root or not:
    whom `record -o` is opened as (safe_open.open_as)."""

    uid: int | None = None
    gid: int | None = None
    groups: list[int] | None = None
    env: dict[str, str] | None = None
    user: Creds | None = None

    @classmethod
    def from_env(cls, as_root: bool) -> Invoker:
        env = dict(os.environ)
        sudo_uid = os.environ.get("SUDO_UID")
        if os.geteuid() != 0 or not sudo_uid:
            return cls(env=env)
        uid = _sudo_id("SUDO_UID", sudo_uid)
        try:
            pw = pwd.getpwuid(uid)
        except KeyError:
            raise RecorderError(f"SUDO_UID={uid} is not a known user") from None
        gid = _sudo_id("SUDO_GID", os.environ.get("SUDO_GID", str(pw.pw_gid)))
        groups = os.getgrouplist(pw.pw_name, gid)
        user = Creds(uid, gid, tuple(groups))
        if as_root:
            return cls(env=env, user=user)
        env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
        return cls(uid, gid, groups, env, user)


def _sudo_id(name: str, value: str) -> int:
    """SUDO_UID / SUDO_GID as a number (RecorderError, one line, if it is not one)."""
    if not (value.isascii() and value.isdigit()):
        raise RecorderError(f"{name}={value!r} is not a numeric id")
    return int(value)


class CommandError(ProctraceError):
    """CMD cannot be run: not found (exit 127) or not executable (126), as a shell says."""

    def __init__(self, name: str, reason: str, exit_code: int) -> None:
        super().__init__(f"{name}: {reason}")
        self.exit_code = exit_code


def _may_exec(path: str, inv: Invoker) -> bool:
    """Whether the user CMD runs as may execute the regular file `path`."""
    if inv.uid is None:
        return os.access(path, os.X_OK)
    st = os.stat(path)
    if inv.uid == 0:
        return bool(st.st_mode & 0o111)
    if st.st_uid == inv.uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid == inv.gid or st.st_gid in (inv.groups or []):
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def resolve(name: str, inv: Invoker) -> str:
    """The file CMD's name runs, looked up as the shell does (PATH of CMD's environment,
    rights of the user CMD runs as); CommandError with the shell's wording otherwise."""
    if "/" in name:
        if os.path.isdir(name):
            raise CommandError(name, "Is a directory", 126)
        if not os.path.exists(name):
            raise CommandError(name, "No such file or directory", 127)
        if not _may_exec(name, inv):
            raise CommandError(name, "Permission denied", 126)
        return name
    denied = None
    env = inv.env if inv.env is not None else os.environ
    for d in env.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(d or ".", name)
        with contextlib.suppress(OSError):
            if os.path.isfile(path):
                if _may_exec(path, inv):
                    return path
                denied = denied or path
    if denied is not None:
        raise CommandError(denied, "Permission denied", 126)
    raise CommandError(name, "command not found", 127)


class Child:
    """CMD, started as `inv` says; it inherits what it would have inherited from us
    (`stdout`: a descriptor to give it as its stdout instead, when the recording goes
    to ours).

    CMD gets SIGTERM when the recorder dies (PR_SET_PDEATHSIG, set after it became the
    user): a recorder killed by SIGKILL does not leave it running untraced.  Only CMD
    gets it, not its descendants, and the kernel clears it when CMD execs a set-uid or
    set-gid program or one with file capabilities (README, "Reliability")."""

    def __init__(self, command: list[str], inv: Invoker, stdout: int | None = None,
                 join: Callable[[], None] | None = None) -> None:
        """`join`: a step CMD takes first, before it execs (cgroup.Cgroup.join_preexec)."""
        try:
            self.proc = subprocess.Popen(
                command, user=inv.uid, group=inv.gid, extra_groups=inv.groups, env=inv.env,
                close_fds=False, stdout=stdout, preexec_fn=_DeathSignal(join),
            )
        except FileNotFoundError:  # gone since resolve() found it
            raise CommandError(command[0], "command not found", 127) from None
        except PermissionError:
            raise CommandError(command[0], "Permission denied", 126) from None
        self.pid = self.proc.pid

    def running(self) -> bool:
        """Not yet reaped (poll() reaps it once it has ended)."""
        return self.proc.poll() is None

    def forward(self, signum: int) -> None:
        """Pass a signal the recorder got on to CMD, unless our terminal sent it CMD too."""
        if self.running() and not _terminal_sent(signum):
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def end(self, tree: Tree) -> None:
        """SIGTERM CMD if it still runs, sent while its tree is frozen (it handles the
        signal before it runs anything else: no next step of a script); SIGKILL after
        TERMINATE_S."""
        if not self.running():
            return
        tree.freeze()
        self.proc.terminate()
        tree.thaw()
        try:
            self.proc.wait(TERMINATE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def status(self) -> int:
        """CMD's exit status as a shell reports it (waits for CMD)."""
        return exit_status(self.proc.wait())


class _DeathSignal:
    """preexec_fn of CMD: `first` (joining its cgroup), then SIGTERM when the recorder
    dies (prctl PR_SET_PDEATHSIG), and at once if it already has (the signal is only
    sent for a death after the call).  libc is loaded here, in the recorder: the child
    only makes two calls."""

    PR_SET_PDEATHSIG = 1

    def __init__(self, first: Callable[[], None] | None = None) -> None:
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl
        self._parent = os.getpid()
        self._first = first

    def __call__(self) -> None:
        if self._first is not None:
            self._first()
        self._prctl(self.PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != self._parent:
            os.kill(os.getpid(), signal.SIGTERM)


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


def end_tree(tree: Tree) -> set[int]:
    """End every process of the tree at once (--kill-leftovers): SIGTERM to each while
    the tree is frozen (none runs on before it has the signal: a script's next step
    does not start when its current one dies), then, after LEFTOVER_S, SIGKILL to
    whatever is left (frozen again, cgroup.kill).  The pids signalled."""
    tree.freeze()
    pids = set(tree.members())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    tree.thaw()
    deadline = time.monotonic() + LEFTOVER_S
    while tree.members() and time.monotonic() < deadline:
        time.sleep(0.01)
    left = tree.members()
    if left:
        tree.freeze()
        pids.update(left)
        tree.kill()
        tree.thaw()
    return pids
