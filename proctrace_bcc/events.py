"""The one message type every backend produces and every renderer consumes.

Events are plain dataclasses.  On disk each is one NDJSON line, externally
tagged like the original proctrace: ``{"Exec": {...}}``.

Strings that came from the kernel (argv, filenames) are bytes.  In memory we
hold them as ``str`` decoded with ``surrogateescape`` so that every byte
sequence survives.  On disk a string that is valid UTF-8 is a JSON string; one
that is not is written as ``{"b64": "<base64 of the exact bytes>"}``.  Use
:func:`display` to show such a string to a person (invalid bytes become
``\\xNN``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

# ---------------------------------------------------------------------------
# Byte-exact strings


def from_bytes(raw: bytes) -> str:
    """Decode kernel bytes into a str that re-encodes to exactly `raw`."""
    return raw.decode("utf-8", "surrogateescape")


def to_bytes(s: str) -> bytes:
    """The exact bytes a str from :func:`from_bytes` came from."""
    return s.encode("utf-8", "surrogateescape")


def display(s: str) -> str:
    """A printable form of a byte-exact string: invalid bytes become ``\\xNN``."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return to_bytes(s).decode("utf-8", "backslashreplace")
    return s


def encode_str(s: str) -> str | dict[str, str]:
    """JSON form of a byte-exact string (see module doc)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return {"b64": base64.b64encode(to_bytes(s)).decode("ascii")}
    return s


def decode_str(v: object) -> str:
    """Inverse of :func:`encode_str`; raises ValueError on anything else."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and set(v) == {"b64"} and isinstance(v["b64"], str):
        try:
            return from_bytes(base64.b64decode(v["b64"], validate=True))
        except ValueError as exc:
            raise ValueError(f"bad base64 string: {exc}") from None
    raise ValueError(f"expected a string, got {type(v).__name__}")


def join_cmdline(argv: list[str]) -> str:
    """The original's `cmdline`: argv joined by single spaces (display form)."""
    return " ".join(display(a) for a in argv)


# ---------------------------------------------------------------------------
# Events


@dataclass(slots=True)
class Fork:
    KIND: ClassVar[str] = "Fork"
    timestamp: int
    parent_pid: int
    child_pid: int
    parent_pgid: int
    child_pgid: int | None = None
    sid: int | None = None


@dataclass(slots=True)
class FdInfo:
    """One open descriptor of a process (recorded with `record --fds`)."""

    fd: int
    kind: str  # "pipe", "socket", "file", "tty", "char", "dir", "other"
    dev: int = 0
    ino: int = 0
    path: str | None = None
    inherited: bool | None = None
    flags: int | None = None


@dataclass(slots=True)
class Exec:
    KIND: ClassVar[str] = "Exec"
    timestamp: int
    pid: int
    ppid: int
    pgid: int
    cmdline: str
    argv: list[str] | None = None
    filename: str | None = None
    interpreter: list[str] | None = None
    sid: int | None = None
    uid: int | None = None
    truncated: bool = False
    fds: list[FdInfo] | None = None
    # The chosen environment variables at this exec (record --env; absent key: not set);
    # None: not recorded.  On disk only when not None.
    env: dict[str, str] | None = None
    # A chosen variable may be missing or its value cut (bounds: docs/format.md); on disk
    # only when true.
    env_truncated: bool = field(default=False, metadata={"omit_default": True})

    @classmethod
    def from_argv(cls, timestamp: int, pid: int, ppid: int, pgid: int, argv: list[str],
                  **kw: Any) -> Exec:
        return cls(timestamp=timestamp, pid=pid, ppid=ppid, pgid=pgid,
                   cmdline=join_cmdline(argv), argv=argv, **kw)


@dataclass(slots=True)
class ExecFailed:
    KIND: ClassVar[str] = "ExecFailed"
    timestamp: int
    pid: int
    filename: str
    errno: int
    # The filename is a prefix (bpftrace reads at most 199 bytes); on disk only when true.
    truncated: bool = field(default=False, metadata={"omit_default": True})


@dataclass(slots=True)
class Exit:
    KIND: ClassVar[str] = "Exit"
    timestamp: int
    pid: int
    ppid: int
    pgid: int
    exit_code: int | None = None
    signal: int | None = None
    core_dumped: bool = False

    @staticmethod
    def split_status(status: int) -> tuple[int | None, int | None, bool]:
        """Split a wait status (code << 8 | core 0x80 | signal) as waitpid does."""
        sig = status & 0x7F
        if sig == 0:
            return (status >> 8) & 0xFF, None, False
        return None, sig, bool(status & 0x80)


@dataclass(slots=True)
class SetPGID:
    KIND: ClassVar[str] = "SetPGID"
    timestamp: int
    pid: int
    ppid: int
    pgid: int
    target_pid: int


@dataclass(slots=True)
class SetSID:
    KIND: ClassVar[str] = "SetSID"
    timestamp: int
    pid: int
    ppid: int
    pgid: int
    sid: int


@dataclass(slots=True)
class Lost:
    KIND: ClassVar[str] = "Lost"
    timestamp: int
    count: int
    cpu: int | None = None


@dataclass(slots=True)
class FdSnapshot:
    """Descriptors of a process still alive when recording ended (read from /proc)."""

    KIND: ClassVar[str] = "FdSnapshot"
    timestamp: int
    pid: int
    fds: list[FdInfo] = field(default_factory=list)


@dataclass(slots=True)
class ProcState:
    """One live process of the traced tree at a hang snapshot (read from /proc)."""

    KIND: ClassVar[str] = "ProcState"
    timestamp: int
    pid: int
    trigger: str  # a SnapshotTrigger word
    state: str  # the state letter of /proc/PID/stat: R S D T t Z X I
    wchan: str | None = None  # /proc/PID/wchan; None when 0 or unreadable
    stack: list[str] | None = None  # /proc/PID/stack function names, innermost first
    fds: list[FdInfo] | None = None  # its descriptors (only with record --fds)


class SnapshotTrigger(StrEnum):
    """What took a hang snapshot (`ProcState.trigger`); on disk the plain word."""

    TIMEOUT = "timeout"  # --timeout fired
    INTERRUPT = "interrupt"  # SIGINT to the recorder
    TERMINATE = "terminate"  # SIGTERM/SIGHUP to the recorder
    REQUEST = "request"  # SIGUSR1 to the recorder


@dataclass(slots=True)
class Signal:
    """A fatal signal generated for a process of the tree (tracepoint signal_generate)."""

    KIND: ClassVar[str] = "Signal"
    timestamp: int
    pid: int  # the target (tgid)
    signal: int
    sender_pid: int | None = None  # tgid of the sender; None: the kernel sent it
    sender_comm: str | None = None
    by_recorder: bool = False  # the recorder itself sent it

    @classmethod
    def generated(cls, timestamp: int, pid: int, sig: int, code: int, sender: int, comm: str,
                  by_recorder: bool) -> Signal:
        """From what signal_generate saw: the current process `sender` (`comm`) and
        siginfo's si_code.  The kernel sent it when si_code > 0 (SI_KERNEL, a fault), or
        for a SIGPIPE or SIGXFSZ a process "sent" itself (send_sig(current): a write)."""
        kernel = code > 0 or (sender == pid and code == 0 and sig in _SELF_SENT)
        return cls(timestamp, pid, sig, None if kernel else sender, None if kernel else comm,
                   by_recorder)


_SELF_SENT = frozenset({13, 25})  # SIGPIPE, SIGXFSZ


class StopReason(StrEnum):
    """Why a recording stopped (`End.reason`); on disk the plain word."""

    EXITED = "exited"  # CMD and every process of its tree ended
    TIMEOUT = "timeout"  # --timeout
    GRACE = "grace"  # --grace after CMD itself ended
    INTERRUPTED = "interrupted"  # SIGINT
    TERMINATED = "terminated"  # SIGTERM
    WRITE_ERROR = "write_error"  # the recording could not be written on (End.lost counts it)


@dataclass(slots=True)
class End:
    """Last event of a recording: why it stopped and which processes still ran."""

    KIND: ClassVar[str] = "End"
    timestamp: int
    # What `record` writes is a StopReason; a file read is kept as it says.
    reason: StopReason | str
    running: list[int] = field(default_factory=list)
    exit_status: int | None = None
    lost: int = 0


Event = (Fork | Exec | ExecFailed | Exit | SetPGID | SetSID | Lost | FdSnapshot | ProcState
         | Signal | End)

EVENT_TYPES: dict[str, type[Any]] = {
    cls.KIND: cls
    for cls in (Fork, Exec, ExecFailed, Exit, SetPGID, SetSID, Lost, FdSnapshot, ProcState,
                Signal, End)
}


@dataclass(slots=True)
class Header:
    """First line of a recording written by proctrace-bcc."""

    format: str = "proctrace-bcc"
    schema: int = 1
    version: str = ""
    backend: str = ""
    kernel: str = ""
    hostname: str = ""
    command: list[str] | None = None
    root_pid: int | None = None
    raw: bool = False
    start_time: str = ""
    options: dict[str, Any] = field(default_factory=dict)
