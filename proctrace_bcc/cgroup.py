"""CMD's tree in a cgroup v2 of its own: stopped at once, killed at once.

`record` makes ``<cgroup2 mount><our cgroup>/proctrace-bcc-<pid>/`` and CMD joins it
before it execs (its preexec step writes to a cgroup.procs descriptor the recorder
opened: the kernel checks the opener's rights, 5.16+).  Every descendant is born in
it, setsid and double forks included (a recorder killed by SIGKILL leaves its cgroup
behind: the next one removes it once empty).  Ending the tree is then atomic:
``cgroup.freeze`` (5.2+) stops every member where it is; a signal sent meanwhile is
handled before the member runs on when thawed (one that kills by default kills at
once, frozen or not); ``cgroup.kill`` (5.14+) SIGKILLs every member at once.

Where that is not possible (no writable cgroup2, an older kernel, CMD could not
join), :class:`Signals` does the same with signals to the members the recorder
knows: SIGSTOP each, SIGCONT each, SIGKILL each.  A process forked between two of
those signals can escape the stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from proctrace_bcc.procfs import running

FREEZE_S = 0.5  # wait at most this long for cgroup.events to say "frozen 1"


class Tree(Protocol):
    """How CMD's tree is stopped and killed (a cgroup, or signals to its members)."""

    def freeze(self) -> None: ...
    def thaw(self) -> None: ...
    def kill(self) -> None: ...
    def members(self) -> list[int]: ...
    def close(self) -> None: ...


def _cgroup2_mount(mounts: str = "/proc/self/mounts") -> Path | None:
    with contextlib.suppress(OSError), open(mounts) as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return Path(parts[1])
    return None


def _own_path(cgroup: str = "/proc/self/cgroup") -> str:
    with contextlib.suppress(OSError), open(cgroup) as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return "/"


def _remove_stale(parent: Path) -> None:
    """Remove the empty cgroups of recorders that are gone (killed by SIGKILL: no
    clean-up); one still holding processes stays (rmdir fails)."""
    with contextlib.suppress(OSError):
        for d in parent.glob("proctrace-bcc-*"):
            pid = d.name.rsplit("-", 1)[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                with contextlib.suppress(OSError):
                    d.rmdir()


class Cgroup:
    """A cgroup v2 directory of our own, for CMD's tree."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.has_kill = (path / "cgroup.kill").exists()
        # CMD writes its pid here before it execs (join_preexec); ours: O_CLOEXEC
        self.procs_fd = os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    @classmethod
    def create(cls) -> tuple[Cgroup | None, str]:
        """A new cgroup for CMD, or None and why not."""
        mount = _cgroup2_mount()
        if mount is None:
            return None, "no cgroup2 file system is mounted"
        name = f"proctrace-bcc-{os.getpid()}"
        why = ""
        for parent in (mount / _own_path().lstrip("/"), mount):
            _remove_stale(parent)
            path = parent / name
            try:
                path.mkdir()
            except OSError as exc:
                why = f"cannot create {path}: {exc.strerror}"
                continue
            if not (path / "cgroup.freeze").exists():
                path.rmdir()
                return None, "cgroup.freeze is missing (kernel older than 5.2)"
            try:
                return cls(path), ""
            except OSError as exc:
                path.rmdir()
                why = f"cannot open {path}/cgroup.procs: {exc.strerror}"
        return None, why

    def join_preexec(self) -> Callable[[], None]:
        """For CMD's preexec step: join this cgroup (a failure leaves CMD outside; the
        recorder sees it with :meth:`holds`)."""
        fd = self.procs_fd

        def join() -> None:
            with contextlib.suppress(OSError):
                os.write(fd, b"0")
        return join

    def holds(self, pid: int) -> bool:
        return pid in self.members()

    def members(self) -> list[int]:
        try:
            return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def _events(self) -> dict[str, str]:
        try:
            lines = (self.path / "cgroup.events").read_text().splitlines()
        except OSError:
            return {}
        return dict(line.split(" ", 1) for line in lines if " " in line)

    def _write(self, name: str, value: str) -> None:
        with contextlib.suppress(OSError):
            (self.path / name).write_text(value)

    def freeze(self) -> None:
        """Stop every member (returns once the kernel says frozen, FREEZE_S at most)."""
        self._write("cgroup.freeze", "1")
        deadline = time.monotonic() + FREEZE_S
        while self._events().get("frozen") != "1" and time.monotonic() < deadline:
            time.sleep(0.002)

    def thaw(self) -> None:
        self._write("cgroup.freeze", "0")

    def kill(self) -> None:
        """SIGKILL every member at once (cgroup.kill; before 5.14: each member, frozen)."""
        if self.has_kill:
            self._write("cgroup.kill", "1")
            return
        for pid in self.members():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        """Remove the cgroup: members still running (leftovers not killed) go back to
        the parent cgroup, thawed."""
        os.close(self.procs_fd)
        self.thaw()
        parent = self.path.parent / "cgroup.procs"
        for _ in range(100):
            pids = self.members()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    parent.write_text(str(pid))
        with contextlib.suppress(OSError):
            self.path.rmdir()


class Signals:
    """The fallback: the same with signals to the members `alive()` names."""

    def __init__(self, alive: Callable[[], Iterable[int]]) -> None:
        self._alive = alive

    def _send(self, sig: int) -> None:
        for pid in self.members():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def members(self) -> list[int]:
        return [p for p in self._alive() if running(p)]

    def freeze(self) -> None:
        self._send(signal.SIGSTOP)

    def thaw(self) -> None:
        self._send(signal.SIGCONT)

    def kill(self) -> None:
        self._send(signal.SIGKILL)

    def close(self) -> None:
        pass
