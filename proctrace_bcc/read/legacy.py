"""Recordings written by the original proctrace (Rust), converted into our events.

A file without our ``Header`` line is read as one of the original's two JSON shapes
(both externally tagged, one object per line):

- the shape of its documentation: ``Fork {timestamp, parent_pid, child_pid,
  parent_pgid}``, ``Exec {timestamp, pid, ppid, pgid, cmdline}``, ``Exit {timestamp,
  pid, ppid, pgid}``, ``SetSID {..., sid}``, ``SetPGID {timestamp, pid, ppid, pgid}``,
  where ``cmdline`` is a string, a list of strings or null, plus ``ExecArgs
  {timestamp, pid, args}`` records that fill a null ``cmdline``;
- its later shape: the same records with a ``seq`` field (the order in which its
  bpftrace script printed them), and the exec split over ``ExecFilename {seq,
  timestamp, pid, filename}``, ``ExecArgs {seq, timestamp, pid, args}`` then ``Exec``
  (success, no cmdline) or ``BadExec {seq, timestamp, pid}`` (the execve failed), or
  already merged as ``ExecFull {seq, timestamp, pid, ppid, pgid, filename, args}``.

Conversion (see docs/format.md):

- records are put in ``seq`` order when every record has one (file order otherwise),
  exec pieces are assembled per pid, and the result is sorted by timestamp;
- ExecFilename + ExecArgs + Exec, an Exec with its ExecArgs, and ExecFull become one
  ``Exec`` (``args`` as a list becomes ``argv``; as a string, only ``cmdline``);
- ExecFilename + ExecArgs + BadExec becomes ``ExecFailed`` with ``errno`` 0 (the
  original did not record the error);
- SetSID and SetPGID records with a negative value (the syscall failed; the original's
  script printed the return value) are dropped; a SetPGID's ``target_pid`` is the
  caller (the original did not record the target) and its ``pgid`` is kept as written;
- numbers are kept as the original wrote them.  Its ``pgid`` fields were not process
  groups (the thread group leader's pid; ``Fork.parent_pgid`` was the parent's parent),
  so renderers do not present them as groups for these recordings, and ``Exit`` has no
  exit status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proctrace_bcc.codec import INT_FIELDS, event_from_obj
from proctrace_bcc.events import Event, ExecFailed, join_cmdline

# The integer fields of the original's records (ours, less SetPGID's target; SetSID's sid).
_REQUIRED: dict[str, tuple[str, ...]] = {
    "Fork": INT_FIELDS["Fork"],
    "Exec": INT_FIELDS["Exec"],
    "ExecFull": INT_FIELDS["Exec"],
    "ExecArgs": ("timestamp", "pid"),
    "ExecFilename": ("timestamp", "pid"),
    "BadExec": ("timestamp", "pid"),
    "Exit": INT_FIELDS["Exit"],
    "SetSID": (*INT_FIELDS["SetSID"], "sid"),
    "SetPGID": INT_FIELDS["SetSID"],
}
# The kinds of the original's records (what a file without a Header may begin with).
KINDS = frozenset(_REQUIRED)


def _int(tag: str, body: dict[str, Any], name: str) -> int:
    if name not in body:
        raise ValueError(f"{tag}: missing field {name!r}")
    v = body[name]
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"{tag}.{name} must be an integer, got {v!r}")
    return v


def _args(tag: str, v: Any) -> tuple[str, list[str] | None]:
    """The original's ExecArgsKind: a joined string or a list of strings."""
    if isinstance(v, str):
        return v, None
    if isinstance(v, list) and all(isinstance(a, str) for a in v):
        return join_cmdline(v), list(v)
    raise ValueError(f"{tag}: args must be a string or a list of strings, got {v!r}")


def _filename(tag: str, body: dict[str, Any]) -> str:
    v = body.get("filename")
    if not isinstance(v, str):
        raise ValueError(f"{tag}.filename must be a string, got {v!r}")
    return v


class ConversionError(ValueError):
    """A record that cannot be converted: the message, and the line of the record."""

    def __init__(self, lineno: int, msg: str) -> None:
        super().__init__(msg)
        self.lineno = lineno


@dataclass(slots=True)
class _Record:
    order: int  # seq, or position in the file
    pos: int
    lineno: int
    tag: str
    body: dict[str, Any]
    timestamp: int
    pid: int
    event: Event | None = None  # one of our own kinds, already converted


@dataclass(slots=True)
class _Pending:
    """Pieces of one exec of a pid, assembled as they come."""

    timestamp: int
    filename: str | None = None
    cmdline: str | None = None
    argv: list[str] | None = None
    exec_rec: _Record | None = None  # an Exec without cmdline waiting for its ExecArgs


class LegacyReader:
    """Feed it every record of a header-less file, then call :meth:`finish`."""

    def __init__(self) -> None:
        self._records: list[_Record] = []
        self._all_seq = True

    def feed(self, lineno: int, tag: str, body: Any) -> None:
        """Check one record; ValueError says what is wrong with it."""
        if not isinstance(body, dict):
            raise ValueError(f"{tag}: body must be an object")
        if tag not in _REQUIRED:
            # Our own kinds (ExecFailed, Lost, End, FdSnapshot) in a file without header.
            ev = event_from_obj(tag, body)
            self._records.append(_Record(len(self._records), len(self._records), lineno, tag,
                                         body, ev.timestamp, -1, ev))
            self._all_seq = False
            return
        for name in _REQUIRED[tag]:
            _int(tag, body, name)
        seq = body.get("seq")
        if seq is None:
            self._all_seq = False
            order = len(self._records)
        elif not isinstance(seq, int) or isinstance(seq, bool):
            raise ValueError(f"{tag}.seq must be an integer, got {seq!r}")
        else:
            order = seq
        pid = body["child_pid"] if tag == "Fork" else body["pid"]
        if tag == "ExecFull":
            _filename(tag, body)
            _args(tag, body.get("args"))
        elif tag == "ExecArgs":
            _args(tag, body.get("args"))
        elif tag == "ExecFilename":
            _filename(tag, body)
        elif tag == "Exec" and body.get("cmdline") is not None:
            _args(tag, body["cmdline"])
        self._records.append(_Record(order, len(self._records), lineno, tag, body,
                                     body["timestamp"], pid))

    def finish(self) -> list[tuple[int, Event]]:
        """Every converted event with the line of the record it comes from (an
        assembled exec: its Exec, ExecFull or BadExec record), in timestamp order
        (ties: the original's order).  ConversionError names the line of a record
        that cannot be converted."""
        recs = self._records
        if self._all_seq:
            recs = sorted(recs, key=lambda r: (r.order, r.pos))
        out: list[tuple[int, int, int, Event]] = []
        pending: dict[int, _Pending] = {}

        def emit(ev: Event | None, order: int, lineno: int) -> None:
            if ev is not None:
                out.append((ev.timestamp, order, lineno, ev))

        def flush_exec(pid: int) -> None:
            p = pending.get(pid)
            if p is not None and p.exec_rec is not None:
                try:
                    emit(self._exec(p.exec_rec, p), p.exec_rec.order, p.exec_rec.lineno)
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConversionError(p.exec_rec.lineno, str(exc)) from None
                del pending[pid]

        for i, r in enumerate(recs):
            try:
                self._convert(i, r, pending, emit, flush_exec)
            except ConversionError:
                raise
            except (ValueError, KeyError, TypeError) as exc:
                raise ConversionError(r.lineno, str(exc)) from None
        for pid in list(pending):
            flush_exec(pid)
        out.sort(key=lambda x: (x[0], x[1]))
        return [(lineno, ev) for _, _, lineno, ev in out]

    def _convert(self, i: int, r: _Record, pending: dict[int, _Pending],
                 emit: Callable[[Event | None, int, int], None],
                 flush_exec: Callable[[int], None]) -> None:
        """Record `r` (the i-th in the original's order): what it emits or adds to the
        exec pieces of its pid."""
        tag, body, pid = r.tag, r.body, r.pid
        if r.event is not None:
            emit(r.event, i, r.lineno)
            return
        if tag != "ExecArgs":
            flush_exec(pid)
        if tag == "ExecFilename":
            pending[pid] = _Pending(r.timestamp, filename=_filename(tag, body))
        elif tag == "ExecArgs":
            cmdline, argv = _args(tag, body["args"])
            p = pending.get(pid)
            if p is None:
                pending[pid] = _Pending(r.timestamp, cmdline=cmdline, argv=argv)
            elif p.cmdline is None or len(cmdline) > len(p.cmdline):
                # Two ExecArgs for one exec: the original keeps the longer one.
                p.cmdline, p.argv = cmdline, argv
        elif tag == "Exec":
            p = pending.get(pid)
            if body.get("cmdline") is not None:
                emit(self._exec(r, p), i, r.lineno)
                pending.pop(pid, None)
            elif p is not None and p.cmdline is not None:
                emit(self._exec(r, p), i, r.lineno)
                del pending[pid]
            else:
                # Seed shape: the ExecArgs comes after the Exec.
                p = p or _Pending(r.timestamp)
                p.exec_rec = r
                pending[pid] = p
        elif tag == "ExecFull":
            pending.pop(pid, None)
            emit(self._exec(r, None), i, r.lineno)
        elif tag == "BadExec":
            p = pending.pop(pid, None)
            filename = ""
            if p is not None:
                filename = p.filename or (p.argv[0] if p.argv else "") or ""
            failed = ExecFailed(timestamp=r.timestamp, pid=pid, filename=filename, errno=0)
            emit(failed, i, r.lineno)
        else:
            emit(self._plain(r), i, r.lineno)

    @staticmethod
    def _exec(r: _Record, p: _Pending | None) -> Event:
        body = {k: v for k, v in r.body.items() if k not in ("seq", "args")}
        filename: str | None = p.filename if p is not None else None
        argv: list[str] | None = None
        if r.tag == "ExecFull":
            filename = _filename(r.tag, r.body)
            cmdline, argv = _args(r.tag, r.body["args"])
        elif body.get("cmdline") is not None:
            cmdline, argv = _args(r.tag, body["cmdline"])
        elif p is not None and p.cmdline is not None:
            cmdline, argv = p.cmdline, p.argv
        else:
            cmdline = filename or ""
        body["cmdline"] = cmdline
        if argv is not None and body.get("argv") is None:
            body["argv"] = argv
        if filename is not None and body.get("filename") is None:
            body["filename"] = filename
        return event_from_obj("Exec", body)

    @staticmethod
    def _plain(r: _Record) -> Event | None:
        body = {k: v for k, v in r.body.items() if k != "seq"}
        if r.tag == "SetSID" and body["sid"] < 0:
            return None  # setsid failed
        if r.tag == "SetPGID":
            if body["pgid"] < 0:
                return None  # setpgid failed
            body.setdefault("target_pid", body["pid"])
        return event_from_obj(r.tag, body)
