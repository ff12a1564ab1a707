"""The line protocol between bpf_programs/proctrace.bt and the parser, declared once.

bpftrace runs with `-f json`: every output line is one JSON object.  Three
kinds matter (anything else, such as maps printed at exit, is ignored):

- `{"type": "attached_probes", "data": {"probes": N}}`: the probes are being
  attached (not yet live: the handshake below proves that);
- `{"type": "lost_events", "data": {"events": N}}`: N records were lost;
- `{"type": "printf", "data": "TAG FIELD FIELD ...\\n"}`: one record of the
  script, in one printf.

A record is a tag letter and space-separated fields: decimal numbers and, last,
at most one string as `%rx` hex ("\\x2f\\x74...", which no argv content can
confuse).  Kernel strings are read CHUNK bytes at a time; `c_string` says which
may have been cut.  `ts` is `nsecs` (CLOCK_BOOTTIME in bpftrace; the parser
converts it to CLOCK_MONOTONIC); pids, pgids and sids are numbers in the
recorder's pid namespace (0: invisible from there); `tid` is the global id of
the thread that called execve, and (tid, ts) keys the several lines of one exec.

The classes below are the records, one per tag (`RECORDS`): their fields, in
order, are the printf's, `int` for a decimal number and `bytes` for the hex
string; a field with a default may be missing at the end of the line (older
captures).  `decode()` turns a printf's text into its record; the parser
(parser.py) turns records into events.  tests/unit/test_bpftrace_protocol.py
checks every printf of proctrace.bt against these declarations.

An exec is an E line and, for the same (tid, ts), one A line per argument-area
chunk, an N line and, when E's `script` is not SCRIPT_NO, a Z line that may
come from another CPU, so before the E line.

The handshake: the recorder calls prctl(HANDSHAKE, nonce, seq) and the
script's last probe answers with an H line (start-up: seq 0; a sync round:
seq > 0, pinned to one CPU, which the line reports).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import NamedTuple

HANDSHAKE = 0x50544254  # prctl option no kernel knows ("PTBT"): returns EINVAL
CHUNK = 200  # bytes per string / argument-area chunk (BPFTRACE_STRLEN, max 200 in 0.17)

# ExecLine.script
SCRIPT_NO = 0
SCRIPT_YES = 1  # the kernel found an interpreter; a Z line brings the caller's argv[0]
SCRIPT_ASK = 2  # no sched_prepare_exec: a Z line comes, the parser compares argv[0]s


class HandshakeLine(NamedTuple):
    """H: the handshake answered; `pid` is the recorder's, as its namespace sees it."""

    level: int  # the recorder's pid-namespace level
    inum: int  # and its inode
    pid: int
    seq: int = 0  # prctl's 3rd argument (0: the start-up handshake)
    cpu: int = 0  # where the probe ran


class ForkLine(NamedTuple):
    """F: fork of a process (not a thread) by `pid`."""

    ts: int
    pid: int
    pgid: int
    sid: int
    child: int


class ExecLine(NamedTuple):
    """E: a successful exec's header; A, N and perhaps Z lines follow."""

    ts: int
    tid: int
    pid: int
    ppid: int
    pgid: int
    sid: int
    uid: int
    arglen: int  # bytes of the new image's argument area
    script: int  # SCRIPT_NO, SCRIPT_YES or SCRIPT_ASK


class ArgLine(NamedTuple):
    """A: chunk `i` of an exec's argument area (CHUNK bytes from i * CHUNK; the last
    chunk's window ends at the area's end)."""

    tid: int
    ts: int
    i: int
    data: bytes


class FileLine(NamedTuple):
    """N: the file the kernel executed."""

    tid: int
    ts: int
    filename: bytes


class Argv0Line(NamedTuple):
    """Z: the caller's argv[0] (for a script, or to compare: see SCRIPT_ASK)."""

    tid: int
    ts: int
    ok: int  # 0: argv[0] was unreadable (NULL)
    argv0: bytes = b""  # (hand-made lines leave it out when not ok)


class ExecFailedLine(NamedTuple):
    """X: a failed execve/execveat."""

    ts: int
    pid: int
    errno: int
    filename: bytes


class ExitLine(NamedTuple):
    """T: exit of a whole thread group."""

    ts: int
    pid: int
    ppid: int
    pgid: int
    status: int  # wait status


class SignalLine(NamedTuple):
    """G: a fatal signal generated for a traced process (only when the recorder is in
    the initial pid namespace: the target is the tracepoint's global pid)."""

    ts: int
    pid: int  # the target: the tracepoint's pid (a thread id; the process for kill(2))
    sig: int
    code: int  # siginfo si_code (> 0: the kernel sent it)
    sender: int  # the current process's tgid
    comm: bytes  # its comm, 16 bytes, NUL-terminated


class SetpgidLine(NamedTuple):
    """P: a successful setpgid(argpid, argpgid), its raw arguments."""

    ts: int
    pid: int
    ppid: int
    argpid: int
    argpgid: int


class SetsidLine(NamedTuple):
    """S: a successful setsid."""

    ts: int
    pid: int
    ppid: int
    pgid: int
    sid: int


Record = (HandshakeLine | ForkLine | ExecLine | ArgLine | FileLine | Argv0Line
          | ExecFailedLine | ExitLine | SignalLine | SetpgidLine | SetsidLine)


@dataclass(frozen=True, slots=True)
class Kind:
    """One record kind: its tag, class and fields (names and types, in line order)."""

    tag: str
    cls: type[Record]
    fields: tuple[tuple[str, type], ...]  # (name, int or bytes)
    width: int  # how many fields
    ints: int  # how many of them are decimal: the leading ones
    has_hex: bool  # the last field is the hex string
    required: int  # fields without a default: the fewest a line may carry
    defaults: tuple[int | bytes, ...]  # the values of the fields after those


def _kind(tag: str, cls: type[Record]) -> Kind:
    hints = typing.get_type_hints(cls)
    fields = tuple((name, hints[name]) for name in cls._fields)
    if any(t not in (int, bytes) for _, t in fields):
        raise TypeError(f"{cls.__name__}: fields are int or bytes")
    has_hex = fields[-1][1] is bytes
    if any(t is bytes for _, t in fields[:-1]):
        raise TypeError(f"{cls.__name__}: a hex (bytes) field can only be the last")
    required = len(fields) - len(cls._field_defaults)
    defaults = tuple(cls._field_defaults[name] for name, _ in fields[required:])
    return Kind(tag, cls, fields, len(fields), len(fields) - has_hex, has_hex, required,
                defaults)


RECORDS: dict[str, Kind] = {k.tag: k for k in (
    _kind("H", HandshakeLine),
    _kind("F", ForkLine),
    _kind("E", ExecLine),
    _kind("A", ArgLine),
    _kind("N", FileLine),
    _kind("Z", Argv0Line),
    _kind("X", ExecFailedLine),
    _kind("T", ExitLine),
    _kind("G", SignalLine),
    _kind("P", SetpgidLine),
    _kind("S", SetsidLine),
)}


def unhex(tok: str) -> bytes:
    """`%rx` output ("\\x2f\\x74") -> the bytes."""
    return bytes.fromhex(tok.replace("\\x", ""))


def decode(text: str) -> Record:
    """A printf's text (without its newline) -> its record.

    KeyError: unknown tag; ValueError: too few or too many fields, or one that
    does not parse.
    """
    tag, _, rest = text.partition(" ")
    kind = RECORDS[tag]
    toks = rest.split(" ")
    n = len(toks)
    if n == kind.width:
        values: list[int | bytes] = [*map(int, toks[:kind.ints])]
        if kind.has_hex:
            values.append(unhex(toks[-1]))
    elif kind.required <= n < kind.width:  # the hex field, if any, is among those left out
        values = [*map(int, toks), *kind.defaults[n - kind.required:]]
    else:
        raise ValueError(f"{tag} line with {n} fields")
    return tuple.__new__(kind.cls, values)  # the NamedTuple, defaults filled


def c_string(buf: bytes) -> tuple[bytes, bool]:
    """A string read by str() into CHUNK bytes -> (value, may_be_cut).

    str() keeps at most CHUNK-1 bytes: a value that long may have been longer.
    """
    n = buf.find(b"\0")
    if n < 0:
        return buf, True
    return buf[:n], n >= CHUNK - 1
