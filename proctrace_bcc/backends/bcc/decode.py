"""Perf-buffer records of proctrace.bpf.c (struct pt_event, see proctrace.h) -> events."""

from __future__ import annotations

import ctypes as ct
import os

from proctrace_bcc.backends import abi
from proctrace_bcc.backends.argv import split_args
from proctrace_bcc.events import (
    Event,
    Exec,
    ExecFailed,
    Exit,
    FdInfo,
    Fork,
    SetPGID,
    SetSID,
    Signal,
    from_bytes,
)
from proctrace_bcc.procfs import fd_kind

HDR = ct.sizeof(abi.PtEvent)


def header(data: int, size: int) -> abi.PtEvent | None:
    """The struct pt_event at the start of a record (None: the record is too short)."""
    if size < HDR:
        return None
    return abi.PtEvent.from_buffer_copy(ct.string_at(data, HDR))


def payload(data: int, size: int) -> bytes:
    """The variable-length data after the header."""
    return ct.string_at(data + HDR, size - HDR)


def decode_exec(ev: abi.PtEvent, data: bytes) -> Exec:
    """Build an Exec from the raw event and its data (see proctrace.h)."""
    x = ev.u.exec
    o0 = x.args_len
    o1 = o0 + x.filename_len
    o2 = o1 + x.interp_len
    o3 = o2 + x.argv0_len
    o4 = o3 + x.env_len
    area, filename = data[:o0], data[o0:o1]
    truncated = bool(ev.flags & (abi.PT_F_TRUNCATED | abi.PT_F_ARGS_FAULT))
    argv0 = data[o2:o3] if ev.flags & abi.PT_F_ARGV0 else None
    argv, interpreter, substituted = split_args(area, filename, bool(ev.flags & abi.PT_F_SCRIPT),
                                                argv0)
    truncated |= substituted  # argv[0] unreadable: the kernel's filename stands in
    return Exec.from_argv(
        ev.ts, ev.pid, ev.ppid, ev.pgid, [from_bytes(a) for a in argv],
        filename=from_bytes(filename),
        interpreter=[from_bytes(a) for a in interpreter] if interpreter is not None else None,
        sid=ev.sid, uid=ev.uid, truncated=truncated,
        env=split_env(data[o3:o4]) if ev.flags & abi.PT_F_ENV else None,
        env_truncated=bool(ev.flags & abi.PT_F_ENV_TRUNCATED),
    )


def split_env(data: bytes) -> dict[str, str]:
    """The "NAME=value\\0" entries the program kept (the first of a name wins, as for
    getenv(); a last entry cut inside its name has no '=' and is dropped)."""
    env: dict[str, str] = {}
    for entry in data.split(b"\0"):
        name, eq, value = entry.partition(b"=")
        if eq:
            env.setdefault(from_bytes(name), from_bytes(value))
    return env


def kernel_dev(dev: int) -> int:
    """A kernel dev_t (major << 20 | minor) in the userspace encoding st_dev uses."""
    return os.makedev(dev >> 20, dev & 0xFFFFF)


def decode_fds(ev: abi.PtEvent, data: bytes) -> list[FdInfo]:
    """The descriptors of a PT_FDS record (empty slots skipped)."""
    n = min(ev.u.fds.size, len(data)) // ct.sizeof(abi.PtFd)
    out: list[FdInfo] = []
    for i in range(n):
        f = abi.PtFd.from_buffer_copy(data, i * ct.sizeof(abi.PtFd))
        if f.fd == abi.PT_FD_EMPTY:
            continue
        kind = fd_kind(f.mode, f.rdev >> 20)
        path: str | None = None
        if kind == "file":
            name = bytes(f.name).split(b"\0", 1)[0]
            path = from_bytes(name) if name else None
        elif kind == "tty" and (f.rdev >> 20) in range(136, 144):
            path = f"/dev/pts/{((f.rdev >> 20) - 136) * 1048576 + (f.rdev & 0xFFFFF)}"
        inherited = None if f.inherited == abi.PT_FD_INHERIT_UNKNOWN else bool(f.inherited)
        out.append(FdInfo(fd=f.fd, kind=kind, dev=kernel_dev(f.dev), ino=f.ino, path=path,
                          inherited=inherited, flags=f.flags))
    return out


def decode(data: int, size: int) -> Event | None:
    """Decode one perf-buffer record (address, size) into an event (None: PT_FDS or unknown)."""
    ev = header(data, size)
    if ev is None:
        return None
    t, u = ev.type, ev.u
    if t == abi.PT_FORK:
        return Fork(ev.ts, ev.pid, u.fork.child_pid, ev.pgid, child_pgid=u.fork.child_pgid,
                    sid=u.fork.child_sid)
    if t == abi.PT_EXEC:
        return decode_exec(ev, payload(data, size))
    if t == abi.PT_EXIT:
        code, sig, core = Exit.split_status(u.exit.status)
        return Exit(ev.ts, ev.pid, ev.ppid, ev.pgid, exit_code=code, signal=sig,
                    core_dumped=core)
    if t == abi.PT_EXEC_FAILED:
        name = ct.string_at(data + HDR, min(u.exec_failed.filename_len, size - HDR))
        return ExecFailed(ev.ts, ev.pid, from_bytes(name), u.exec_failed.error)
    if t == abi.PT_SETPGID:
        return SetPGID(ev.ts, ev.pid, ev.ppid, u.setpgid.pgid, target_pid=u.setpgid.target_pid)
    if t == abi.PT_SETSID:
        return SetSID(ev.ts, ev.pid, ev.ppid, ev.pgid, sid=u.setsid.sid)
    if t == abi.PT_SIGNAL:
        s = u.signal
        return Signal.generated(ev.ts, ev.pid, s.sig, s.code, s.sender,
                                from_bytes(s.sender_comm), bool(ev.flags & abi.PT_F_BY_TRACER))
    return None
