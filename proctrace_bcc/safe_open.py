"""Opening the files we write, safely when we run as root.

One set of rules for every output (`record -o`, `analyze -o`, `ingest -o`, the header
cache's files):

- the final component of a path is never followed when it is a symbolic link
  (``O_NOFOLLOW``: refused with a clear message);
- an existing file is truncated or replaced only when it is a regular file of the
  writer's, with no other hard link; any other existing file (a FIFO, a terminal,
  /dev/null) is written as it is, never truncated, and a FIFO with no reader is
  waited for a bounded time (non-blocking open), not forever;
- files we create from nothing are created with ``O_EXCL|O_NOFOLLOW`` (:func:`create_new`)
  and put in place by ``rename``, which replaces a name, never what a link points to.

Under sudo, `record -o` is opened by :func:`open_as`: a child process that has become
the invoking user (their uid, gid and groups) opens the path and passes the
descriptor back over a socketpair (``SCM_RIGHTS``).  So the kernel itself decides, as
it would for that user, whether the directory is writable (permissions, ACLs, the
``fs.protected_*`` rules of sticky directories), and a new file is theirs from its
creation: there is no chown, hence no window between creating and chowning.  (The
alternative, setfsuid/setfsgid around an open in the recorder, needs setgroups too,
which is process-wide, and changes the recorder's own credentials; a child changes
nothing of ours.)

``-``, ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N`` and ``/proc/self/fd/N`` name a
descriptor the caller gave us (:func:`given_fd`): it is used as it is, not opened.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FIFO_WAIT_S = 5.0  # how long a FIFO with no reader is waited for
_GIVEN = re.compile(r"/(?:dev/fd|proc/self/fd)/(\d+)")


class Unsafe(Exception):
    """A path we refuse to write (or cannot): the reason, in a few words."""


@dataclass(frozen=True, slots=True)
class Creds:
    """Whom to open as: the user behind sudo."""

    uid: int
    gid: int
    groups: tuple[int, ...]


def given_fd(path: str) -> int | None:
    """The descriptor `path` names (``-``: stdout), or None for a plain path."""
    if path in ("-", "/dev/stdout"):
        return 1
    if path == "/dev/stderr":
        return 2
    m = _GIVEN.fullmatch(path)
    return int(m.group(1)) if m else None


def _refuse_existing(st: os.stat_result, uid: int) -> None:
    """Unsafe unless the regular file `st` may be truncated or replaced by `uid`."""
    if st.st_uid != uid:
        raise Unsafe(f"it exists and belongs to uid {st.st_uid}, not to uid {uid}: "
                     "not overwritten (remove it or choose another name)")
    if st.st_nlink > 1:
        raise Unsafe("it has other hard links: not overwritten")


def _open_nofollow(name: str, flags: int, dir_fd: int,
                   notice: Callable[[str], None] | None) -> int:
    """os.open of `name` in `dir_fd` with O_NOFOLLOW|O_NONBLOCK; a FIFO with no reader
    is waited for FIFO_WAIT_S (ENXIO) then refused; the descriptor is made blocking."""
    deadline = time.monotonic() + FIFO_WAIT_S
    told = False
    while True:
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                         | os.O_NOCTTY, 0o666, dir_fd=dir_fd)
            break
        except OSError as exc:
            if exc.errno == errno.ELOOP and _is_link(name, dir_fd):
                raise Unsafe("it is a symbolic link (not followed when writing)") from None
            if exc.errno != errno.ENXIO:
                raise
            if time.monotonic() >= deadline:
                raise Unsafe(f"it is a FIFO with no reader (waited {FIFO_WAIT_S:g} s): "
                             "start its reader first") from None
            if notice is not None and not told:
                notice(f"{name} is a FIFO with no reader yet: waiting up to "
                       f"{FIFO_WAIT_S:g} s")
                told = True
            time.sleep(0.05)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


@dataclass(slots=True)
class Opened:
    """An output opened by :func:`open_stream`: the descriptor, its directory's (so
    that the name can be removed again without following a path), whether we created it."""

    fd: int
    dir_fd: int
    name: str
    created: bool

    def remove(self) -> None:
        """Unlink the file if we created it and its name still is it (in its directory:
        no path is followed again)."""
        if not self.created:
            return
        with contextlib.suppress(OSError):
            st, mine = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False), \
                os.fstat(self.fd)
            if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                os.unlink(self.name, dir_fd=self.dir_fd)

    def close_dir(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.dir_fd)


def open_stream(path: str, notice: Callable[[str], None] | None = None) -> Opened:
    """`path` opened for writing from its start, by the rules above: created (mode 0666
    & ~umask) if missing; a regular file of ours is truncated, one not ours refused;
    a stream (FIFO, character device, socket) is written as it is.  OSError (the
    system's reason) or Unsafe."""
    parent, name = os.path.split(path)
    if not name:
        raise Unsafe("it is a directory")
    dir_fd = os.open(parent or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = _open_nofollow(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, dir_fd, notice)
            return Opened(fd, dir_fd, name, True)
        except FileExistsError:
            fd = _open_nofollow(name, os.O_WRONLY, dir_fd, notice)
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                _refuse_existing(st, os.geteuid())
                os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
        return Opened(fd, dir_fd, name, False)
    except BaseException:
        os.close(dir_fd)
        raise


def open_as(path: str, creds: Creds, notice: Callable[[str], None] | None = None) -> Opened:
    """:func:`open_stream` done by a child process running as `creds` (see the module's
    doc); the descriptors come back over a socketpair.  Unsafe or OSError as there."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # the child: become the user, open, pass the descriptors, exit
        status = 1
        try:
            ours.close()
            os.setgroups(list(creds.groups))
            os.setresgid(creds.gid, creds.gid, creds.gid)
            os.setresuid(creds.uid, creds.uid, creds.uid)
            try:
                o = open_stream(path, notice)
            except Unsafe as exc:
                theirs.sendall(b"U" + str(exc).encode())
            except OSError as exc:
                theirs.sendall(b"E%d " % (exc.errno or 0) + (exc.strerror or "").encode())
            else:
                socket.send_fds(theirs, [b"C" if o.created else b"F"], [o.fd, o.dir_fd])
            status = 0
        finally:
            os._exit(status)
    theirs.close()
    try:
        msg, fds, _, _ = socket.recv_fds(ours, 4096, 2)
    finally:
        ours.close()
        os.waitpid(pid, 0)
    if msg in (b"C", b"F") and len(fds) == 2:
        for fd in fds:
            os.set_inheritable(fd, False)
        return Opened(fds[0], fds[1], os.path.basename(path), msg == b"C")
    for fd in fds:
        os.close(fd)
    if msg.startswith(b"U"):
        raise Unsafe(msg[1:].decode(errors="replace"))
    if msg.startswith(b"E"):
        code, _, text = msg[1:].partition(b" ")
        raise OSError(int(code), text.decode(errors="replace"))
    raise Unsafe(f"the process opening it as uid {creds.uid} failed")


def create_new(path: str | Path, mode: int = 0o600) -> int:
    """A new file at `path` (O_EXCL|O_NOFOLLOW: never an existing file or a link's
    target), open for writing."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                   mode)


def temp_beside(path: Path) -> tuple[int, Path]:
    """A new temporary file in `path`'s directory, to be renamed onto `path`."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            return create_new(tmp), tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise Unsafe(f"cannot create a file in {path.parent}: "
                         f"{exc.strerror or exc}") from None
    raise Unsafe(f"cannot create a temporary file in {path.parent}")


def replaceable(path: Path) -> bool:
    """Whether `path` is to be written by renaming a temporary file onto it (missing,
    or a regular file of ours) rather than opened as a stream (:func:`open_stream`);
    Unsafe for a symbolic link, a directory, or a regular file not ours."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        raise Unsafe(exc.strerror or str(exc)) from None
    if stat.S_ISLNK(st.st_mode):
        raise Unsafe("it is a symbolic link (not followed when writing)")
    if stat.S_ISDIR(st.st_mode):
        raise Unsafe("it is a directory")
    if stat.S_ISREG(st.st_mode):
        _refuse_existing(st, os.geteuid())
        return True
    return False


def write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to the new file `path` (see create_new)."""
    with os.fdopen(create_new(path, mode), "wb") as f:
        f.write(data)
