"""bpftrace's `-f json` output of proctrace.bt -> the shared event objects.

Needs neither root nor bpftrace (tests/unit/test_bpftrace_parse.py feeds it
captured output).  The records and their fields are declared in protocol.py;
this module reassembles the several lines of one exec and converts times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from proctrace_bcc.backends.argv import split_args
from proctrace_bcc.backends.bpftrace.protocol import (
    CHUNK,
    SCRIPT_ASK,
    SCRIPT_NO,
    SCRIPT_YES,
    ArgLine,
    Argv0Line,
    ExecFailedLine,
    ExecLine,
    ExitLine,
    FileLine,
    ForkLine,
    HandshakeLine,
    Record,
    SetpgidLine,
    SetsidLine,
    SignalLine,
    c_string,
    decode,
)
from proctrace_bcc.events import (
    Event,
    Exec,
    ExecFailed,
    Exit,
    Fork,
    Lost,
    SetPGID,
    SetSID,
    Signal,
    from_bytes,
)

STALE_EXEC_S = 2.0  # an exec still missing lines after this long is emitted as truncated

Key = tuple[int, int]  # (tid that called execve, the exec's timestamp)


@dataclass(slots=True)
class _Exec:
    head: ExecLine
    nchunks: int
    arrived: float
    chunks: dict[int, bytes] = field(default_factory=dict)
    filename: bytes | None = None
    z: tuple[bytes | None] | None = None  # (argv[0] or None when unreadable) once Z came

    def complete(self) -> bool:
        return (self.filename is not None and len(self.chunks) == self.nchunks
                and (self.head.script == SCRIPT_NO or self.z is not None))


def boot_minus_mono() -> int:
    """CLOCK_BOOTTIME - CLOCK_MONOTONIC now (ns): time the machine spent suspended."""
    best: tuple[int, int] | None = None
    for _ in range(3):  # the pair read closest together
        a = time.monotonic_ns()
        b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        c = time.monotonic_ns()
        if best is None or c - a < best[0]:
            best = (c - a, b - (a + c) // 2)
    assert best is not None
    return best[1]


class Parser:
    """bpftrace `-f json` lines of proctrace.bt -> events.

    `clock_offset`: CLOCK_BOOTTIME - CLOCK_MONOTONIC in ns (bpftrace's `nsecs`
    is boot time); `resync()` re-reads it.
    """

    def __init__(self, max_chunks: int, clock_offset: int | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.max_chunks = max_chunks
        self._fixed_offset = clock_offset
        self.offset = clock_offset if clock_offset is not None else boot_minus_mono()
        self._now = now
        self.out: list[Event] = []
        self.pending: dict[Key, _Exec] = {}
        self.early_z: dict[Key, tuple[bytes | None, float]] = {}  # Z lines before their E
        self.handshakes = 0
        self.answers: dict[int, int] = {}  # sync handshakes answered: seq -> cpu it ran on
        self.level = 0
        self.inum = 0
        self.tracer = 0
        self.attached: int | None = None
        self.lost = 0
        self.orphans = 0  # continuation lines whose exec header never came
        self.bad = 0  # lines we could not parse

    def resync(self) -> None:
        if self._fixed_offset is None:
            self.offset = boot_minus_mono()

    def take(self) -> list[Event]:
        out, self.out = self.out, []
        return out

    # -- lines ----------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Complete lines (without or with their newline)."""
        for line in data.splitlines():
            if line.strip():
                self.feed_line(line)

    def feed_line(self, line: bytes) -> None:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.bad += 1
            return
        if not isinstance(msg, dict):
            self.bad += 1
            return
        kind = msg.get("type")
        data = msg.get("data")
        if kind == "printf" and isinstance(data, str):
            try:
                rec = decode(data.rstrip("\n"))
            except (KeyError, ValueError):
                self.bad += 1
                return
            self._record(rec)
        elif kind == "lost_events":
            count = data.get("events") if isinstance(data, dict) else msg.get("count")
            if isinstance(count, int) and count > 0:
                self.lost += count
                self.out.append(Lost(time.monotonic_ns(), count))
        elif kind == "attached_probes":
            probes = data.get("probes") if isinstance(data, dict) else None
            self.attached = probes if isinstance(probes, int) else 0
        # anything else (maps printed at exit, warnings): not ours

    def _ts(self, ts: int) -> int:
        return ts - self.offset

    def _record(self, r: Record) -> None:
        match r:
            case ArgLine():
                ex = self._continued(r.tid, r.ts)
                if ex is not None:
                    ex.chunks[r.i] = r.data
                    self._maybe_done((r.tid, r.ts), ex)
            case ExecLine():
                nchunks = min((r.arglen + CHUNK - 1) // CHUNK, self.max_chunks)
                ex = _Exec(r, nchunks, self._now())
                key = (r.tid, r.ts)
                early = self.early_z.pop(key, None)
                if early is not None:
                    ex.z = (early[0],)
                self.pending[key] = ex
                self._maybe_done(key, ex)
            case FileLine():
                ex = self._continued(r.tid, r.ts)
                if ex is not None:
                    ex.filename = r.filename
                    self._maybe_done((r.tid, r.ts), ex)
            case Argv0Line():
                key = (r.tid, r.ts)
                argv0 = r.argv0 if r.ok else None
                ex = self.pending.get(key)
                if ex is None:  # it ran on another CPU than the E line, or the exec failed
                    self.early_z[key] = (argv0, self._now())
                    return
                ex.z = (argv0,)
                self._maybe_done(key, ex)
            case ForkLine():
                self.out.append(Fork(self._ts(r.ts), r.pid, r.child, r.pgid, child_pgid=r.pgid,
                                     sid=r.sid))
            case ExitLine():
                code, sig, core = Exit.split_status(r.status & 0xFFFF)
                self.out.append(Exit(self._ts(r.ts), r.pid, r.ppid, r.pgid, exit_code=code,
                                     signal=sig, core_dumped=core))
            case SignalLine():
                comm = from_bytes(r.comm.split(b"\0", 1)[0])
                self.out.append(Signal.generated(self._ts(r.ts), r.pid, r.sig, r.code, r.sender,
                                                 comm, r.sender == self.tracer))
            case ExecFailedLine():
                name, cut = c_string(r.filename)
                self.out.append(ExecFailed(self._ts(r.ts), r.pid, from_bytes(name), r.errno,
                                           truncated=cut))
            case SetpgidLine():
                target = r.argpid or r.pid  # setpgid(0, x): the caller
                self.out.append(SetPGID(self._ts(r.ts), r.pid, r.ppid, r.argpgid or target,
                                        target_pid=target))
            case SetsidLine():
                self.out.append(SetSID(self._ts(r.ts), r.pid, r.ppid, r.pgid, sid=r.sid))
            case HandshakeLine():
                self.level, self.inum, self.tracer = r.level, r.inum, r.pid
                self.handshakes += 1
                if r.seq:  # a sync round's answer
                    self.answers[r.seq] = r.cpu

    # -- execs ----------------------------------------------------------------

    def _continued(self, tid: int, ts: int) -> _Exec | None:
        """The pending exec a continuation line (A, N) belongs to."""
        ex = self.pending.get((tid, ts))
        if ex is None:
            self.orphans += 1
        return ex

    def _maybe_done(self, key: Key, ex: _Exec) -> None:
        if ex.complete():
            del self.pending[key]
            self.out.append(self._exec(ex))

    def expire(self, everything: bool = False) -> None:
        """Emit execs still missing lines after STALE_EXEC_S (all of them: `everything`)."""
        limit = self._now() - STALE_EXEC_S
        for key, ex in list(self.pending.items()):
            if everything or ex.arrived <= limit:
                del self.pending[key]
                self.out.append(self._exec(ex))
        for key, (_, arrived) in list(self.early_z.items()):
            if everything or arrived <= limit:  # a failed exec's (no sched_prepare_exec)
                del self.early_z[key]

    def _exec(self, ex: _Exec) -> Exec:
        h = ex.head
        kept = min(h.arglen, self.max_chunks * CHUNK)
        truncated = h.arglen > kept
        parts: list[bytes] = []
        for i in range(ex.nchunks):
            chunk = ex.chunks.get(i)
            if chunk is None:  # lost: keep what came before it
                truncated = True
                break
            start = i * CHUNK
            window = min(start, h.arglen - CHUNK)  # where the script's read began
            lo = start - window
            parts.append(chunk[lo:lo + min(CHUNK, kept - start)])
        area = b"".join(parts)
        if ex.filename is None:
            truncated = True
        filename, fcut = c_string(ex.filename) if ex.filename is not None else (b"", False)
        argv0: bytes | None = None
        acut = False
        if ex.z is not None and ex.z[0] is not None:
            argv0, acut = c_string(ex.z[0])
        script = h.script == SCRIPT_YES
        if h.script == SCRIPT_ASK and argv0 is not None:
            # The new image's argv[0] is the caller's unless an interpreter came in.
            first = area.split(b"\0", 1)[0]
            script = not (first.startswith(argv0) if acut else first == argv0)
        if h.script != SCRIPT_NO and ex.z is None:
            truncated = True  # the Z line never came
        if script:
            truncated |= acut
        argv, interp, substituted = split_args(area, filename, script, argv0,
                                               filename_cut=fcut)
        truncated |= fcut or substituted
        return Exec.from_argv(
            h.ts - self.offset, h.pid, h.ppid, h.pgid, [from_bytes(a) for a in argv],
            filename=from_bytes(filename) if ex.filename is not None else None,
            interpreter=[from_bytes(a) for a in interp] if interp is not None else None,
            sid=h.sid, uid=h.uid, truncated=truncated,
        )
