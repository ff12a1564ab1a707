"""Reading a recording in one streaming pass, for `analyze` and `ingest`.

A recording can hold millions of events; analysis must stay within a few times the
cost of merely parsing the file and keep memory proportional to the number of
processes, not events.  So this module:

- reads lines and parses each with orjson exactly once, keeping event bodies as the
  parsed dicts (no event object per line);
- passes them on in timestamp order.  `Analysis` tries, in turn (`ORDERS`): DIRECT
  (read, check and build in one loop; the first event older than the one before
  raises :class:`OutOfOrder`), WINDOWED (a reordering window of WINDOW events) and
  ALL (the whole file sorted in memory: only for pathological files); `analyze`
  starts again with the next one on OutOfOrder (its output is not written yet);
- builds the process tree with :class:`FastBuilder`, which applies exactly the rules
  of :mod:`proctrace_bcc.tree` (it subclasses its builder) but reads the dicts
  directly; anything unusual (non-UTF-8 strings, fds, a malformed body) goes through
  :func:`~proctrace_bcc.recording.event_from_obj` and the reference builder, which
  also produces the error messages;
- or, for modes that need no tree (sequential, by-process, ingest), only tracks which
  process each event belongs to with :class:`Membership` (same rules, a few bytes
  per process);
- decides which processes belong to the analysed subtree while reading (the root is
  the first process with the selected pid; members are its descendants by fork).

Files without our Header line are the original proctrace's formats: they are small,
read whole, converted by :mod:`proctrace_bcc.legacy`, and then fed through the same
pipeline as dicts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson

from proctrace_bcc.errors import RecordingError
from proctrace_bcc.events import (
    EVENT_TYPES,
    End,
    Event,
    ExecFailed,
    Exit,
    Fork,
    Header,
    Lost,
)
from proctrace_bcc.recording import Recording, event_from_obj, event_to_obj, header_from_obj
from proctrace_bcc.tree import ExecSpan, Process, ProcessTree, _Builder

# Events held back to put slightly out-of-order lines in order.
WINDOW = 4096
# How much disorder a pass tolerates (see Reader.chunks); `analyze` tries them in turn.
DIRECT, WINDOWED, ALL = "direct", "window", "all"
ORDERS = (DIRECT, WINDOWED, ALL)
# Bytes of lines read and parsed at a time.
CHUNK_BYTES = 1 << 16
_GLOBAL_KINDS = frozenset({"Lost", "End"})


class OutOfOrder(Exception):
    """An event is older than events already passed on: start again, more tolerant."""

    def __init__(self, lineno: int) -> None:
        super().__init__(f"line {lineno} is out of order beyond the reordering window")
        self.lineno = lineno


# ---------------------------------------------------------------------------
# Input


class Source:
    """The input of one analysis: a file, or stdin spooled to a temporary file.

    Spooling stdin lets the reader make a second pass (OutOfOrder) and report
    truncated last lines exactly as for files.
    """

    def __init__(self, input: str | os.PathLike[str]) -> None:
        self._tmp: str | None = None
        if str(input) == "-":
            self.name = "<stdin>"
            fd, self._tmp = tempfile.mkstemp(prefix="proctrace-stdin-", suffix=".ndjson")
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
            self.path = self._tmp
        else:
            self.name = str(input)
            self.path = str(input)

    def open(self) -> IO[bytes]:
        try:
            return open(self.path, "rb")
        except FileNotFoundError:
            raise RecordingError(self.name, None, "no such file") from None
        except IsADirectoryError:
            raise RecordingError(self.name, None, "is a directory") from None
        except PermissionError:
            raise RecordingError(self.name, None, "permission denied") from None
        except OSError as exc:
            raise RecordingError(self.name, None, exc.strerror or str(exc)) from None

    def close(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# One event as the pipeline carries it: (timestamp, line number, kind, body).
Obj = tuple[int, int, str, dict[str, Any]]


class Reader:
    """Header, legacy flag, warnings, and the events of a recording as dicts."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.name = source.name
        self.header: Header | None = None
        self.header_line: int | None = None
        self.legacy = False
        self.warnings: list[str] = []
        self.last_line = 0
        self._read_header()

    def _bad(self, lineno: int, msg: str) -> RecordingError:
        return RecordingError(self.name, lineno, msg)

    def _read_header(self) -> None:
        with self.source.open() as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    if not line.endswith(b"\n"):
                        # The only line, cut short: nothing else to analyze.
                        self._truncated(lineno, exc)
                        raise RecordingError(self.name, None,
                                             "empty recording (no complete line)") from None
                    raise self._bad(lineno, f"not valid JSON ({exc})") from None
                if isinstance(obj, dict) and len(obj) == 1 and "Header" in obj:
                    try:
                        self.header = header_from_obj(obj["Header"])
                    except (ValueError, TypeError) as exc:
                        raise self._bad(lineno, str(exc)) from None
                    self.header_line = lineno
                else:
                    self.legacy = True
                return
        raise RecordingError(self.name, None, "empty recording (no events)")

    def _truncated(self, lineno: int, exc: Exception) -> None:
        self.warnings.append(f"{self.name}:{lineno}: truncated last line ignored ({exc})")

    def _undecodable(self, lineno: int, line: bytes, exc: Exception) -> bool:
        """A line orjson refused: False for a blank line (skip it), True for a
        truncated last line (noted; stop reading); anything else is an error."""
        if not line.strip():
            return False
        if not line.endswith(b"\n"):
            self._truncated(lineno, exc)
            return True
        raise self._bad(lineno, f"not valid JSON ({exc})") from None

    def _not_one_key(self, lineno: int) -> RecordingError:
        return self._bad(lineno, "expected an object with exactly one key (the event kind)")

    def _raw_chunks(self) -> Iterator[tuple[list[Obj], bool]]:
        """Event lines of one of our recordings in file order, checked lightly, in chunks.

        Yields (chunk, in_order): in_order is False when a timestamp in the chunk is
        smaller than the one before it (in the chunk or the previous chunk).
        """
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        kinds = EVENT_TYPES
        skip = self.header_line or 0
        lineno = 0
        prev = -(1 << 62)
        with self.source.open() as f:
            while True:
                lines = f.readlines(CHUNK_BYTES)
                if not lines:
                    break
                chunk: list[Obj] = []
                ap = chunk.append
                in_order = True
                for line in lines:
                    lineno += 1
                    if lineno <= skip:
                        continue
                    try:
                        obj = loads(line)
                    except decode_error as exc:
                        if self._undecodable(lineno, line, exc):
                            break
                        continue
                    if type(obj) is not dict or len(obj) != 1:
                        raise self._not_one_key(lineno)
                    ((tag, body),) = obj.items()
                    if tag not in kinds:
                        if tag == "Header":
                            raise self._bad(lineno, "Header must be the first line")
                        raise self._bad(lineno, f"unknown event kind {tag!r}")
                    if type(body) is not dict:
                        raise self._bad(lineno, f"{tag}: body must be an object")
                    ts = body.get("timestamp")
                    if type(ts) is not int:
                        if ts is None:
                            raise self._bad(lineno, f"{tag}: missing field 'timestamp'")
                        raise self._bad(lineno,
                                        f"{tag}.timestamp must be an integer, got {ts!r}")
                    if ts < prev:
                        in_order = False
                    else:
                        prev = ts
                    ap((ts, lineno, tag, body))
                yield chunk, in_order
        self.last_line = lineno

    def _legacy(self) -> list[Obj]:
        from proctrace_bcc.legacy import LegacyReader

        conv = LegacyReader()
        lineno = 0
        with self.source.open() as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    if self._undecodable(lineno, line, exc):
                        break
                    continue
                if not isinstance(obj, dict) or len(obj) != 1:
                    raise self._not_one_key(lineno)
                ((tag, body),) = obj.items()
                if tag == "Header":
                    raise self._bad(lineno, "Header must be the first line")
                try:
                    conv.feed(lineno, tag, body)
                except (ValueError, KeyError, TypeError) as exc:
                    raise self._bad(lineno, str(exc)) from None
        self.last_line = lineno
        out: list[Obj] = []
        for i, ev in enumerate(conv.finish()):
            ((tag, body),) = event_to_obj(ev).items()
            out.append((ev.timestamp, i, tag, body))
        return out

    def chunks(self, order: str = DIRECT) -> Iterator[list[Obj]]:
        """Events in timestamp order (ties in file order), in lists.

        `order` is how much disorder is tolerated: DIRECT none (events are passed on as
        read; an event older than the one before raises OutOfOrder), WINDOW up to
        WINDOW events, ALL any (the whole file is sorted in memory).
        """
        if self.legacy:
            yield self._legacy()
        elif order == DIRECT:
            for chunk, in_order in self._raw_chunks():
                if not in_order:
                    prev = -(1 << 62)
                    for o in chunk:
                        if o[0] < prev:
                            raise OutOfOrder(o[1])
                        prev = o[0]
                    raise OutOfOrder(chunk[0][1])  # older than the previous chunk
                yield chunk
        elif order == ALL:
            every = [o for chunk, _ in self._raw_chunks() for o in chunk]
            every.sort(key=_order)
            yield every
        elif order == WINDOWED:
            yield from _reorder(self._raw_chunks())
        else:
            raise ValueError(f"unknown order {order!r}")

    def line_of(self, index: int) -> int | None:
        """The line number to name for an event (None for converted legacy events)."""
        return None if self.legacy else index


def _first_disorder(chunk: list[Obj], prev: int) -> int:
    """The line of the first event in chunk older than the one before it."""
    for ts, lineno, _tag, _body in chunk:
        if ts < prev:
            return lineno
        prev = ts
    return chunk[-1][1] if chunk else 0


def _order(o: Obj) -> tuple[int, int]:
    return o[0], o[1]


def _reorder(chunks: Iterable[tuple[list[Obj], bool]], window: int = WINDOW
             ) -> Iterator[list[Obj]]:
    """Sort an almost sorted stream of chunks, holding back `window` events.

    Raises OutOfOrder when an event is older than one already yielded.
    """
    carry: list[Obj] = []
    last: int | None = None
    for chunk, in_order in chunks:
        if not chunk:
            continue
        if carry:
            both = carry + chunk
            if not in_order or chunk[0][0] < carry[-1][0]:
                both.sort(key=_order)
        else:
            both = chunk
            if not in_order:
                both.sort(key=_order)
        if len(both) <= window:
            carry = both
            continue
        out = both[:-window]
        carry = both[-window:]
        if last is not None and out[0][0] < last:
            raise OutOfOrder(out[0][1])
        last = out[-1][0]
        yield out
    if carry:
        if last is not None and carry[0][0] < last:
            raise OutOfOrder(carry[0][1])
        yield carry


# ---------------------------------------------------------------------------
# Events as objects (for callers that want them all)

_STRING_LISTS = ("argv", "interpreter")


def fast_event(tag: str, body: dict[str, Any]) -> Event:
    """Like event_from_obj, faster for well-formed bodies (falls back to it otherwise)."""
    cls = EVENT_TYPES.get(tag)
    if cls is not None and "fds" not in body:
        try:
            ev: Event = cls(**body)
        except TypeError:
            return event_from_obj(tag, body)
        for name in _INTS.get(tag, ()):
            if type(getattr(ev, name)) is not int:
                return event_from_obj(tag, body)
        f = getattr(ev, "filename", None)
        if f is not None and type(f) is not str:
            return event_from_obj(tag, body)
        for name in _STRING_LISTS:
            v = getattr(ev, name, None)
            if v is not None and (type(v) is not list or any(type(a) is not str for a in v)):
                return event_from_obj(tag, body)
        return ev
    return event_from_obj(tag, body)


_INTS: dict[str, tuple[str, ...]] = {
    "Fork": ("timestamp", "parent_pid", "child_pid", "parent_pgid"),
    "Exec": ("timestamp", "pid", "ppid", "pgid"),
    "ExecFailed": ("timestamp", "pid", "errno"),
    "Exit": ("timestamp", "pid", "ppid", "pgid"),
    "SetPGID": ("timestamp", "pid", "ppid", "pgid", "target_pid"),
    "SetSID": ("timestamp", "pid", "ppid", "pgid"),
    "Lost": ("timestamp", "count"),
    "End": ("timestamp",),
}


def read_all(input: str | os.PathLike[str] | Source) -> Recording:
    """The whole recording in memory, events sorted by timestamp (ties: file order)."""
    with contextlib.nullcontext(input) if isinstance(input, Source) else Source(input) as src:
        r = Reader(src)
        events: list[Event] = []
        ap = events.append
        for chunk in r.chunks(ALL):
            for _, lineno, tag, body in chunk:
                try:
                    ap(fast_event(tag, body))
                except (ValueError, KeyError, TypeError) as exc:
                    raise RecordingError(r.name, r.line_of(lineno), str(exc)) from None
        return Recording(r.name, r.header, events, r.warnings,
                         r.legacy or _converted(r.header))


# ---------------------------------------------------------------------------
# The process tree from dicts


class _Slow(Exception):
    """This body needs the reference path (event_from_obj + _Builder.add)."""


def _strs(v: object) -> bool:
    """None, or a list of str (a non-UTF-8 string is a {"b64": ...} object)."""
    if v is None:
        return True
    if type(v) is not list:
        return False
    try:
        " ".join(v)
    except TypeError:
        return False
    return True


class FastBuilder(_Builder):
    """tree._Builder fed with parsed dicts; tracks the selected subtree while building.

    ``_fast`` inlines the reference rules of ``_Builder.add`` (``_get``, ``_set_pgid``,
    ``_set_sid``) for speed; tests/unit/test_stream.py checks both give the same tree.
    """

    def __init__(self, select_pid: int | None) -> None:
        super().__init__(keep_events=False)
        self.select_pid = select_pid
        self.root: Process | None = None
        self.members: set[Process] = set()

    def _new(self, pid: int, t: int, ppid: int | None) -> Process:
        p = _Builder._new(self, pid, t, ppid)
        if self.select_pid is not None:
            par = p.parent
            if par is not None and par in self.members:
                self.members.add(p)
            elif self.root is None and pid == self.select_pid:
                self.root = p
                self.members.add(p)
        return p

    def _forget_adopted(self, pid: int) -> Process | None:
        """The process a Fork of `pid` replaces (tree._Builder's adoption rule), if any."""
        old = self.live.get(pid)
        if old is not None and old.exit is None and old.fork_time is None and not (
            old.execs or old.children
        ):
            if old is self.root:
                self.root = None
            self.members.discard(old)
            return old
        return None

    def add(self, ev: Event) -> Process | None:
        if isinstance(ev, Fork):
            self._forget_adopted(ev.child_pid)
        return super().add(ev)

    def add_obj(self, t: int, tag: str, body: dict[str, Any]) -> Process | None:
        """Add one event body; ValueError (from event_from_obj) if it is malformed."""
        try:
            return self._fast(t, tag, body)
        except (_Slow, KeyError):
            pass
        ev = event_from_obj(tag, body)
        if isinstance(ev, (Lost, End)):
            return None
        return self.add(ev)

    def _proc(self, pid: int, t: int, ppid: int | None) -> Process:
        # _Builder._get, inlined in _fast for the common case.
        p = self.live.get(pid)
        if p is None or p.exit is not None:
            return self._new(pid, t, ppid)
        if p.ppid is None and ppid:
            p.ppid = ppid
        return p

    def _fast(self, t: int, tag: str, body: dict[str, Any]) -> Process | None:
        # Every check happens before the first change of state, so that a body that
        # falls back to the reference path is never applied twice.
        if tag == "Exec":
            pid, ppid, pgid = body["pid"], body["ppid"], body["pgid"]
            cmdline = body["cmdline"]
            argv = body.get("argv")
            filename = body.get("filename")
            interp = body.get("interpreter")
            if (type(pid) is not int or type(ppid) is not int or type(pgid) is not int
                    or type(cmdline) is not str or not _strs(argv)
                    or (interp is not None and not _strs(interp))
                    or (filename is not None and type(filename) is not str)
                    or body.get("fds") is not None):
                raise _Slow
            sid = body.get("sid")
            uid = body.get("uid")
            owner = self.live.get(pid)
            if owner is None or owner.exit is not None:
                owner = self._new(pid, t, ppid)
            elif owner.ppid is None and ppid:
                owner.ppid = ppid
            owner.execs.append(ExecSpan(t, cmdline, argv, filename, interp,
                                        body.get("truncated", False), None))
            if uid is not None:
                owner.uid = uid
            h = owner.pgid_history
            if not h or h[-1][1] != pgid:
                h.append((t, pgid))
            if sid is not None:
                h = owner.sid_history
                if not h or h[-1][1] != sid:
                    h.append((t, sid))
            return owner
        if tag == "Fork":
            ppid, cpid, ppgid = body["parent_pid"], body["child_pid"], body["parent_pgid"]
            if type(ppid) is not int or type(cpid) is not int or type(ppgid) is not int:
                raise _Slow
            cpgid = body.get("child_pgid")
            sid = body.get("sid")
            live = self.live
            parent = live.get(ppid)
            if parent is None or parent.exit is not None:
                parent = self._new(ppid, t, None)
            h = parent.pgid_history
            if not h or h[-1][1] != ppgid:
                h.append((t, ppgid))
            old = live.get(cpid)
            if old is not None and old.exit is None and old.fork_time is None:
                old = self._forget_adopted(cpid)
                if old is not None:
                    self.processes.remove(old)
            owner = self._new(cpid, t, ppid)
            owner.fork_time = t
            owner.pgid_history.append((t, cpgid if cpgid is not None else ppgid))
            if sid is not None:
                owner.sid_history.append((t, sid))
            return owner
        if tag == "Exit":
            pid, ppid, pgid = body["pid"], body["ppid"], body["pgid"]
            if type(pid) is not int or type(ppid) is not int or type(pgid) is not int:
                raise _Slow
            ev = Exit(t, pid, ppid, pgid, body.get("exit_code"), body.get("signal"),
                      body.get("core_dumped", False))
            owner = self._proc(pid, t, ppid)
            owner.exit = ev
            return owner
        if tag == "ExecFailed":
            pid, filename, err = body["pid"], body["filename"], body["errno"]
            if type(pid) is not int or type(err) is not int or type(filename) is not str:
                raise _Slow
            owner = self._proc(pid, t, None)
            owner.failed_execs.append(ExecFailed(t, pid, filename, err,
                                                 body.get("truncated", False)))
            return owner
        if tag == "SetPGID":
            pid, ppid, pgid, target = body["pid"], body["ppid"], body["pgid"], body["target_pid"]
            if (type(pid) is not int or type(ppid) is not int or type(pgid) is not int
                    or type(target) is not int):
                raise _Slow
            owner = self._proc(target, t, None)
            h = owner.pgid_history
            if not h or h[-1][1] != pgid:
                h.append((t, pgid))
            return owner
        if tag == "SetSID":
            pid, ppid, pgid = body["pid"], body["ppid"], body["pgid"]
            if type(pid) is not int or type(ppid) is not int or type(pgid) is not int:
                raise _Slow
            sid = body["sid"]
            owner = self._proc(pid, t, ppid)
            h = owner.pgid_history
            if not h or h[-1][1] != pgid:
                h.append((t, pgid))
            if sid is not None:
                h = owner.sid_history
                if not h or h[-1][1] != sid:
                    h.append((t, sid))
            return owner
        raise _Slow


class Light:
    """What Membership keeps of a process: enough for tree._Builder's identity rules,
    and with ``info`` what `by-process` shows of it (as tree.Process would)."""

    __slots__ = ("adoptable", "exited", "first", "inherited", "last", "pid", "ppid", "seq")

    def __init__(self, pid: int, ppid: int | None, seq: int) -> None:
        self.exited = False
        self.adoptable = True  # not forked in the recording, no exec, no child yet
        self.pid = pid
        self.ppid = ppid  # as tree.Process.ppid
        self.seq = seq  # creation order (tree.ProcessTree.processes order)
        self.inherited: str | None = None  # tree.Process.inherited_command
        self.first: str | None = None  # first exec's cmdline (or filename)
        self.last: str | None = None  # last exec's cmdline

    @property
    def command(self) -> str:
        """tree.Process.command."""
        if self.last is not None:
            return self.last
        return self.inherited or f"<pid {self.pid}>"


class Membership:
    """Which events belong to the selected subtree, without building the tree.

    For `-d sequential` and `ingest`: the same attribution rules as tree._Builder
    (and FastBuilder: same interface) but only a few bytes per live pid, so memory
    does not grow with the recording.  tests/unit/test_stream.py checks it against
    the reference.
    """

    def __init__(self, select_pid: int | None, info: bool = False) -> None:
        self.select_pid = select_pid
        self.info = info  # keep the commands (for by-process)
        self.root: Light | None = None
        self.members: set[Light] = set()
        self.live: dict[int, Light] = {}
        self.count = 0  # processes seen
        self.processes: list[Process] = []  # none: there is no tree

    def _new(self, pid: int, ppid: int | None) -> Light:
        p = Light(pid, ppid, self.count)
        self.count += 1
        live = self.live
        par = live.get(ppid) if ppid else None
        old = live.get(pid)
        if old is not None and not self.info:
            self.members.discard(old)  # keeps memory bounded by live pids
        live[pid] = p
        if par is not None:
            par.adoptable = False
            if self.info:
                p.inherited = par.command
        if self.select_pid is not None:
            if par is not None and par in self.members:
                self.members.add(p)
            elif self.root is None and pid == self.select_pid:
                self.root = p
                self.members.add(p)
        return p

    def _get(self, pid: int, ppid: int | None) -> Light:
        p = self.live.get(pid)
        if p is None or p.exited:
            return self._new(pid, ppid)
        if p.ppid is None and ppid:
            p.ppid = ppid
        return p

    def _exec(self, p: Light, cmdline: str, filename: str | None) -> None:
        if p.first is None:
            p.first = cmdline or filename or ""
        p.last = cmdline

    def add_obj(self, t: int, tag: str, body: dict[str, Any]) -> Light | None:
        """Check one body (event_from_obj: ValueError says what is wrong), then apply it."""
        ev = event_from_obj(tag, body)
        if isinstance(ev, (Lost, End)):
            return None
        return self._apply(tag, ev.__getattribute__)

    def _fast(self, t: int, tag: str, body: dict[str, Any]) -> Light | None:
        # The checks of FastBuilder._fast, then _apply inlined for the common kinds.
        live = self.live
        if tag == "Exec":
            pid, ppid = body["pid"], body["ppid"]
            if (type(pid) is not int or type(ppid) is not int
                    or type(body["pgid"]) is not int or type(body["cmdline"]) is not str
                    or not _strs(body.get("argv")) or not _strs(body.get("interpreter"))
                    or type(body.get("filename", "")) not in (str, type(None))
                    or body.get("fds") is not None):
                raise _Slow
            p = live.get(pid)
            if p is None or p.exited:
                p = self._new(pid, ppid)
            elif p.ppid is None and ppid:
                p.ppid = ppid
            p.adoptable = False
            if self.info:
                self._exec(p, body["cmdline"], body.get("filename"))
            return p
        if tag == "ExecFailed":
            pid = body["pid"]
            if (type(pid) is not int or type(body["errno"]) is not int
                    or type(body["filename"]) is not str):
                raise _Slow
            p = live.get(pid)
            if p is None or p.exited:
                p = self._new(pid, None)
            return p
        if tag == "Exit":
            pid, ppid = body["pid"], body["ppid"]
            if type(pid) is not int or type(ppid) is not int or type(body["pgid"]) is not int:
                raise _Slow
            p = live.get(pid)
            if p is None or p.exited:
                p = self._new(pid, ppid)
            elif p.ppid is None and ppid:
                p.ppid = ppid
            p.exited = True
            return p
        if tag in _INTS and tag not in _GLOBAL_KINDS:
            for k in _INTS[tag]:
                if type(body[k]) is not int:
                    raise _Slow
            return self._apply(tag, body.__getitem__)
        raise _Slow

    def _apply(self, tag: str, get: Any) -> Light | None:
        if tag == "Fork":
            parent_pid, child = get("parent_pid"), get("child_pid")
            self._get(parent_pid, None)
            old = self.live.get(child)
            if old is not None and not old.exited and old.adoptable:
                # tree._Builder's adoption: the process seen before its fork is replaced.
                self.members.discard(old)
                if old is self.root:
                    self.root = None
                self.count -= 1
            p = self._new(child, parent_pid)
            p.adoptable = False
            return p
        if tag == "Exec":
            p = self._get(get("pid"), get("ppid"))
            p.adoptable = False
            if self.info:
                self._exec(p, get("cmdline"), get("filename"))
            return p
        if tag == "Exit":
            p = self._get(get("pid"), get("ppid"))
            p.exited = True
            return p
        if tag == "ExecFailed":
            return self._get(get("pid"), None)
        if tag == "SetPGID":
            return self._get(get("target_pid"), None)
        if tag == "SetSID":
            return self._get(get("pid"), get("ppid"))
        if tag == "FdSnapshot":
            return self.live.get(get("pid"))
        return None


# ---------------------------------------------------------------------------
# One analysis pass

# One analysed event: (timestamp, line, kind, body, owner, in the subtree).  The owner
# is the tree.Process the event belongs to (a Membership entry with tree=False, None
# for Lost and End).
Item = tuple[int, int, str, dict[str, Any], Any, bool]


class Analysis:
    """One pass over a recording: events as dicts with owners, then the (sub)tree.

    The subtree analysed is, in order of precedence: ``root_pid`` (``-p``), the
    header's ``root_pid`` (not for raw recordings), for the original's recordings the
    child of the first event when it is a Fork (as the original did), else everything.
    """

    def __init__(self, source: Source, root_pid: int | None = None, *,
                 order: str = DIRECT, tree: bool = True, info: bool = False) -> None:
        self.reader = Reader(source)
        self.tree = tree
        self.name = self.reader.name
        self.order = order
        h = self.reader.header
        self.explicit_root = root_pid is not None
        self.select_pid: int | None
        if root_pid is not None:
            self.select_pid = root_pid
        elif h is not None and h.root_pid is not None and not h.raw:
            self.select_pid = h.root_pid
        else:
            self.select_pid = None
        self.builder: FastBuilder | Membership = (
            FastBuilder(self.select_pid) if tree else Membership(self.select_pid, info))
        self.first: int | None = None
        self.last = 0
        self.lost = 0
        self.lost_events: list[Lost] = []
        self.end_event: End | None = None
        self.events_read = 0
        self._done = False

    def _error(self, lineno: int, exc: Exception) -> RecordingError:
        return RecordingError(self.name, self.reader.line_of(lineno), str(exc))

    def chunks(self) -> Iterator[list[Item]]:
        """Every event, in timestamp order, in lists of Items."""
        if self.order == DIRECT and not self.reader.legacy:
            return self._direct(True)
        return self._sorted()

    def run(self) -> None:
        """Consume every event (when only the tree is needed)."""
        it = (self._direct(False) if self.order == DIRECT and not self.reader.legacy
              else self._sorted())
        for _ in it:
            pass

    def _slow(self, ts: int, tag: str, body: dict[str, Any]) -> Process | Light | None:
        """Events the fast path declined: global kinds, unusual bodies, bad lines."""
        if tag in _GLOBAL_KINDS:
            self._global(tag, body)
            return None
        if tag not in EVENT_TYPES:
            if tag == "Header":
                raise ValueError("Header must be the first line")
            raise ValueError(f"unknown event kind {tag!r}")
        return self.builder.add_obj(ts, tag, body)

    def _direct(self, collect: bool) -> Iterator[list[Item]]:
        """Build from the reader's chunks as they come; events must be in timestamp order.

        The fast path of `analyze`: no reordering (OutOfOrder at the first chunk with
        an event older than the one before), no per-event tuple beyond the reader's
        unless `collect`.
        """
        r = self.reader
        b = self.builder
        fast = b._fast
        slow = self._slow
        members = b.members
        prev = -(1 << 62)
        n = 0
        selecting = self.select_pid is not None
        for chunk, in_order in r._raw_chunks():
            if not in_order:
                raise OutOfOrder(_first_disorder(chunk, prev))
            if not chunk:
                continue
            if n == 0:
                self._first(chunk[0])
                selecting = self.select_pid is not None
            n += len(chunk)
            out: list[Item] = []
            ap = out.append
            for ts, lineno, tag, body in chunk:
                try:
                    try:
                        owner = fast(ts, tag, body)
                    except (_Slow, KeyError):
                        owner = slow(ts, tag, body)
                except (ValueError, KeyError, TypeError) as exc:
                    raise self._error(lineno, exc) from None
                if collect:
                    ap((ts, lineno, tag, body, owner,
                        (not selecting) or (owner in members if owner is not None
                                            else tag in _GLOBAL_KINDS)))
            prev = chunk[-1][0]
            yield out
        if n:
            self.last = prev
        self.events_read = n
        self._done = True

    def _sorted(self) -> Iterator[list[Item]]:
        """Events put in order by the reader first (WINDOWED, ALL, legacy files)."""
        b = self.builder
        fast = b._fast
        slow = self._slow
        members = b.members
        n = 0
        last = self.last
        for chunk in self.reader.chunks(self.order):
            if n == 0 and chunk:
                self._first(chunk[0])
            n += len(chunk)
            selecting = self.select_pid is not None
            out: list[Item] = []
            ap = out.append
            for ts, lineno, tag, body in chunk:
                if ts > last:
                    last = ts
                try:
                    try:
                        owner = fast(ts, tag, body)
                    except (_Slow, KeyError):
                        owner = slow(ts, tag, body)
                except (ValueError, KeyError, TypeError) as exc:
                    raise self._error(lineno, exc) from None
                ap((ts, lineno, tag, body, owner,
                    (not selecting) or (owner in members if owner is not None
                                        else tag in _GLOBAL_KINDS)))
            self.last = last
            yield out
        self.events_read = n
        self._done = True

    def _first(self, o: Obj) -> None:
        ts, _, tag, body = o
        self.first = ts
        if self.reader.legacy and self.select_pid is None and tag == "Fork":
            child = body.get("child_pid")
            if type(child) is int:
                # The original rendered the tree of the first fork's child.
                self.select_pid = self.builder.select_pid = child

    def _global(self, tag: str, body: dict[str, Any]) -> None:
        ev = event_from_obj(tag, body)
        if isinstance(ev, Lost):
            self.lost += ev.count
            self.lost_events.append(ev)
        elif isinstance(ev, End):
            self.end_event = ev

    def check(self) -> None:
        """After the pass: RecordingError when there were no events or no root."""
        if not self._done:
            raise RuntimeError("Analysis checked before chunks() was consumed")
        r = self.reader
        b = self.builder
        if self.events_read == 0:
            raise RecordingError(self.name, r.header_line,
                                 "recording has a header but no events")
        if self.select_pid is not None:
            if b.root is None:
                if self.explicit_root:
                    raise RecordingError(self.name, None,
                                         f"pid {self.select_pid} does not appear in the "
                                         "recording")
                raise RecordingError(self.name, r.header_line,
                                     f"root pid {self.select_pid} does not appear in the "
                                     "recording (use -p to choose another root)")
        elif not (b.count if isinstance(b, Membership) else b.processes):
            raise RecordingError(self.name, r.last_line or None,
                                 "recording has no process events (no root)")

    def finish(self) -> tuple[Recording, ProcessTree]:
        """The recording's metadata (no events) and the tree of the selected processes."""
        self.check()
        r = self.reader
        b = self.builder
        if not isinstance(b, FastBuilder):
            raise RuntimeError("Analysis(tree=False) has no tree")
        h = r.header
        procs = b.processes
        if self.select_pid is not None:
            root = b.root
            assert root is not None
            members = b.members
            processes = [p for p in procs if p in members]
            roots = [root]
            start = root.start
        else:
            processes = procs
            roots = [p for p in procs if p.parent is None]
            start = self.first if self.first is not None else 0
        tree = ProcessTree(processes=processes, roots=roots, header=h, start=start,
                           end=self.last, lost=self.lost, end_event=self.end_event,
                           lost_events=self.lost_events)
        rec = Recording(self.name, h, [], r.warnings, r.legacy or _converted(h))
        return rec, tree

    @property
    def warnings(self) -> list[str]:
        return self.reader.warnings

    def release(self) -> None:
        """Drop the tree now, without the cycle collector (see release_tree)."""
        if isinstance(self.builder, FastBuilder):
            release_tree(self.builder.processes)
        self.builder.live.clear()
        self.builder.members.clear()


def release_tree(processes: Iterable[Process]) -> None:
    """Break the parent <-> children cycles so reference counting frees the tree.

    `analyze` runs with the cycle collector off (millions of long-lived objects); when
    it is turned back on, a collection would otherwise scan every object of the tree.
    """
    for p in processes:
        p.parent = None
        p.children = []


def _converted(h: Header | None) -> bool:
    """A recording of ours converted from the original's format (by `ingest`)."""
    return h is not None and bool(h.options.get("legacy"))


def restrict(rec: Recording, root_pid: int | None) -> tuple[Recording, ProcessTree]:
    """For renderers that need every event object: the selected subtree of `rec`.

    Same selection rules as :class:`Analysis`; the events of other processes are
    dropped from the returned Recording (Lost and End are kept).
    """
    from proctrace_bcc.tree import build_tree_with_owners

    h = rec.header
    sel: int | None = root_pid
    if sel is None and h is not None and h.root_pid is not None and not h.raw:
        sel = h.root_pid
    if sel is None and h is None and rec.events:
        first = rec.events[0]
        if isinstance(first, Fork):
            sel = first.child_pid
    if not rec.events:
        raise RecordingError(rec.path, None, "recording has a header but no events")
    tree, owners = build_tree_with_owners(rec.events, h)
    if sel is None:
        if not tree.processes:
            raise RecordingError(rec.path, None, "recording has no process events (no root)")
        return rec, tree
    root = next((p for p in tree.processes if p.pid == sel), None)
    if root is None:
        if root_pid is not None:
            raise RecordingError(rec.path, None, f"pid {sel} does not appear in the recording")
        raise RecordingError(rec.path, 1, f"root pid {sel} does not appear in the recording "
                             "(use -p to choose another root)")
    members = set(root.walk())
    events = [ev for ev, o in zip(rec.events, owners, strict=True)
              if (o is None and isinstance(ev, (Lost, End))) or (o is not None and o in members)]
    sub = ProcessTree(processes=[p for p in tree.processes if p in members], roots=[root],
                      header=h, start=root.start, end=tree.end, lost=tree.lost,
                      end_event=tree.end_event, lost_events=tree.lost_events)
    return Recording(rec.path, h, events, rec.warnings, rec.legacy), sub
