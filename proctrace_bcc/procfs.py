"""Descriptor kinds, snapshots of a live process's descriptors, its state, from /proc."""

from __future__ import annotations

import os
import stat

from proctrace_bcc.events import FdInfo, from_bytes

_KINDS = {stat.S_IFIFO: "pipe", stat.S_IFSOCK: "socket", stat.S_IFREG: "file",
          stat.S_IFDIR: "dir", stat.S_IFCHR: "char", stat.S_IFBLK: "block",
          stat.S_IFLNK: "link"}
TTY_MAJORS = frozenset({4, 5, *range(136, 144)})  # tty, console/ptmx, pts


def fd_kind(mode: int, rdev_major: int) -> str:
    """pipe, socket, file, dir, tty, char, block, link or other (anon inodes)."""
    kind = _KINDS.get(stat.S_IFMT(mode), "other")
    if kind == "char" and rdev_major in TTY_MAJORS:
        return "tty"
    return kind


def snapshot_fds(pid: int, proc: str = "/proc") -> list[FdInfo] | None:
    """The open descriptors of a live process (None if it is gone or unreadable)."""
    base = f"{proc}/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return None
    out: list[FdInfo] = []
    for name in sorted(names, key=int):
        path = f"{base}/{name}"
        try:
            target = os.readlink(os.fsencode(path))
            st = os.stat(path)
        except OSError:
            continue  # closed meanwhile
        flags: int | None = None
        try:
            with open(f"{proc}/{pid}/fdinfo/{name}", "rb") as f:
                for line in f:
                    if line.startswith(b"flags:"):
                        flags = int(line.split()[1], 8)
                        break
        except (OSError, ValueError):
            pass
        out.append(FdInfo(fd=int(name), kind=fd_kind(st.st_mode, os.major(st.st_rdev)),
                          dev=st.st_dev, ino=st.st_ino, path=from_bytes(target),
                          inherited=None, flags=flags))
    return out


def proc_state(pid: int, proc: str = "/proc") -> str | None:
    """The state letter of /proc/PID/stat (R S D T t Z X I; None: gone)."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    rest = raw[raw.rfind(b")") + 1:].split()
    return rest[0].decode("ascii", "replace") if rest else None


def running(pid: int) -> bool:
    """Not yet exited (a zombie has exited)."""
    return proc_state(pid) not in (None, "Z", "X")
