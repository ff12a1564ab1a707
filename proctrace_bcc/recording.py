"""Recording files: NDJSON, a Header line then one externally tagged event per line.

Writing is streamed and flushed so that a crash of anything but the disk leaves
a valid file.  Reading reports problems with the file name and line number.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

import orjson

from proctrace_bcc.errors import RecordingError
from proctrace_bcc.events import (
    EVENT_TYPES,
    End,
    Event,
    Exec,
    ExecFailed,
    FdInfo,
    FdSnapshot,
    Header,
    decode_str,
    encode_str,
    join_cmdline,
)

_STR_LIST_FIELDS = {"argv", "interpreter"}
_STR_FIELDS = {"filename", "path"}


def _fd_to_obj(fd: FdInfo) -> dict[str, Any]:
    d: dict[str, Any] = {"fd": fd.fd, "kind": fd.kind, "dev": fd.dev, "ino": fd.ino}
    if fd.path is not None:
        d["path"] = encode_str(fd.path)
    if fd.inherited is not None:
        d["inherited"] = fd.inherited
    if fd.flags is not None:
        d["flags"] = fd.flags
    return d


def event_to_obj(ev: Event) -> dict[str, Any]:
    """The externally tagged JSON object of one event."""
    body: dict[str, Any] = {}
    for f in fields(ev):
        v = getattr(ev, f.name)
        if f.name == "fds":
            if v is None:
                continue
            v = [_fd_to_obj(x) for x in v]
        elif f.name in _STR_LIST_FIELDS and v is not None:
            v = [encode_str(x) for x in v]
        elif f.name in _STR_FIELDS and v is not None:
            v = encode_str(v)
        elif f.metadata.get("omit_default") and v == f.default:
            continue
        body[f.name] = v
    return {ev.KIND: body}


def dumps_event(ev: Event) -> bytes:
    return orjson.dumps(event_to_obj(ev), option=orjson.OPT_APPEND_NEWLINE)


def dumps_header(h: Header) -> bytes:
    body = {f.name: getattr(h, f.name) for f in fields(h)}
    return orjson.dumps({"Header": body}, option=orjson.OPT_APPEND_NEWLINE)


def _fd_from_obj(o: Any) -> FdInfo:
    if not isinstance(o, dict):
        raise ValueError("fds entries must be objects")
    path = o.get("path")
    return FdInfo(
        fd=int(o["fd"]), kind=str(o["kind"]), dev=int(o.get("dev", 0)), ino=int(o.get("ino", 0)),
        path=decode_str(path) if path is not None else None,
        inherited=o.get("inherited"), flags=o.get("flags"),
    )


def event_from_obj(kind: str, body: dict[str, Any]) -> Event:
    """Build one of our events from its tag and body; ValueError says what is wrong."""
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    if not isinstance(body, dict):
        raise ValueError(f"{kind}: body must be an object")
    kw: dict[str, Any] = {}
    names = {f.name: f for f in fields(cls)}
    for k, v in body.items():
        if k not in names:
            continue  # forward compatible: ignore fields we do not know
        if k == "fds":
            v = None if v is None else [_fd_from_obj(x) for x in v]
        elif k in _STR_LIST_FIELDS and v is not None:
            if not isinstance(v, list):
                raise ValueError(f"{kind}.{k} must be a list")
            v = [decode_str(x) for x in v]
        elif k in _STR_FIELDS and v is not None:
            v = decode_str(v)
        kw[k] = v
    if cls is Exec and "cmdline" not in kw:
        kw["cmdline"] = join_cmdline(kw.get("argv") or [])
    try:
        ev: Event = cls(**kw)
    except TypeError as exc:
        msg = str(exc)
        if "missing" in msg:
            missing = msg.split("missing", 1)[1].strip()
            raise ValueError(f"{kind}: missing {missing}") from None
        raise ValueError(f"{kind}: {msg}") from None
    _check_types(ev)
    return ev


_INT_FIELDS = {
    "timestamp", "pid", "ppid", "pgid", "parent_pid", "child_pid", "parent_pgid",
    "target_pid", "count", "errno",
}


def _check_types(ev: Event) -> None:
    for name in _INT_FIELDS:
        v = getattr(ev, name, 0)
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"{ev.KIND}.{name} must be an integer, got {v!r}")


def header_from_obj(body: Any) -> Header:
    if not isinstance(body, dict):
        raise ValueError("Header body must be an object")
    names = {f.name for f in fields(Header)}
    h = Header(**{k: v for k, v in body.items() if k in names})
    if h.schema != 1:
        raise ValueError(f"unsupported schema {h.schema!r} (this version reads schema 1)")
    return h


# ---------------------------------------------------------------------------
# Writing


class RecordingWriter:
    """Streams events to a file; every `flush()` leaves a complete, valid NDJSON file."""

    def __init__(self, out: str | Path | IO[bytes]) -> None:
        if isinstance(out, (str, Path)):
            self.path: str = str(out)
            self._f: IO[bytes] = open(out, "wb")  # noqa: SIM115 - closed in close()
            self._owns = True
        else:
            self.path = getattr(out, "name", "<stream>")
            self._f = out
            self._owns = False
        self.events_written = 0
        self.header_written = False

    def write_header(self, header: Header) -> None:
        self.header_written = True
        self._f.write(dumps_header(header))
        self.flush()

    def write(self, ev: Event) -> None:
        self._f.write(dumps_event(ev))
        self.events_written += 1

    def write_many(self, evs: list[Event]) -> None:
        if evs:
            self._f.write(b"".join(dumps_event(e) for e in evs))
            self.events_written += len(evs)

    def flush(self, sync: bool = True) -> None:
        """Hand what is written to the OS (survives a crash of any process); with
        `sync`, also to the disk (survives a crash of the machine)."""
        self._f.flush()
        if sync:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.fsync(self._f.fileno())

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if self._f.closed:
            return
        self.flush()
        if self._owns:
            self._f.close()

    def fileno(self) -> int:
        return self._f.fileno()


# ---------------------------------------------------------------------------
# Reading


@dataclass(slots=True)
class Recording:
    """A whole recording in memory, events in timestamp order."""

    path: str
    header: Header | None
    events: list[Event]
    warnings: list[str] = field(default_factory=list)
    legacy: bool = False

    @property
    def end(self) -> End | None:
        for ev in reversed(self.events):
            if isinstance(ev, End):
                return ev
        return None


def _open(path: str | Path) -> IO[bytes]:
    if str(path) == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise RecordingError(path, None, "no such file") from None
    except IsADirectoryError:
        raise RecordingError(path, None, "is a directory") from None
    except PermissionError:
        raise RecordingError(path, None, "permission denied") from None
    except OSError as exc:
        raise RecordingError(path, None, exc.strerror or str(exc)) from None


def iter_lines(path: str | Path) -> Iterator[tuple[int, bytes, bool]]:
    """Yield (line number, line, is_last_line_without_newline) for non-blank lines."""
    f = _open(path)
    try:
        prev: tuple[int, bytes] | None = None
        for lineno, line in enumerate(f, 1):
            if prev is not None:
                yield prev[0], prev[1], False
                prev = None
            if not line.strip():
                continue
            if line.endswith(b"\n"):
                yield lineno, line, False
            else:
                prev = (lineno, line)
        if prev is not None:
            yield prev[0], prev[1], True
    finally:
        if f is not sys.stdin.buffer:
            f.close()


def parse_line(line: bytes) -> tuple[str, Any]:
    """Parse one NDJSON line into (tag, body); ValueError if it is not a tagged object."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or len(obj) != 1:
        raise ValueError("expected an object with exactly one key (the event kind)")
    ((tag, body),) = obj.items()
    return tag, body


def read_recording(path: str | Path) -> Recording:
    """Read a recording (ours, or the original proctrace's formats) into memory.

    A truncated last line (recorder killed mid-write) becomes a warning; any
    other bad line is a RecordingError naming file and line.  Events are sorted by
    timestamp (ties keep file order).  The reader is proctrace_bcc.stream (one
    parser for `analyze`, `ingest` and this function); files without a Header are
    converted by proctrace_bcc.legacy.
    """
    from proctrace_bcc.stream import read_all  # local: stream imports this module

    return read_all(path)


__all__ = [
    "ExecFailed",
    "FdSnapshot",
    "Recording",
    "RecordingWriter",
    "dumps_event",
    "dumps_header",
    "event_from_obj",
    "event_to_obj",
    "iter_lines",
    "parse_line",
    "read_recording",
]
