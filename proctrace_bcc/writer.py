"""Writing a recording: the Header line, then one event per line, streamed.

Every `flush()` leaves a complete, valid NDJSON file, so a crash of anything but the
disk leaves a readable recording.

A write that fails (disk full, a reader gone: EPIPE, any I/O error) never raises: the
writer keeps the first error in `failed`, cuts a regular file back to its last
complete line (so it stays valid NDJSON), and from then on only counts the events it
is given (`unwritten`).  :meth:`write_last` still tries one line (the recorder's End,
saying why the file stops there).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

from proctrace_bcc import safe_open
from proctrace_bcc.codec import dumps_event, dumps_header
from proctrace_bcc.events import Event, Header


class RecordingWriter:
    """Streams events to a file or descriptor; see the module's doc."""

    def __init__(self, out: str | Path | int | IO[bytes], name: str | None = None,
                 opened: bool = True) -> None:
        """`out`: a path (opened by safe_open's rules), a descriptor (closed by close();
        `opened`: we opened it at its start, so a failure may cut it back), or a stream
        (flushed, not closed)."""
        self._stream: IO[bytes] | None = None
        self._fd = -1
        self._cuttable = opened
        self.path: str
        if isinstance(out, int):
            self._fd = out
            self.path = name or f"descriptor {out}"
        elif isinstance(out, (str, Path)):
            self.path = str(out)
            try:
                o = safe_open.open_stream(self.path)
            except safe_open.Unsafe as exc:
                raise OSError(f"{self.path}: {exc}") from None
            o.close_dir()
            self._fd = o.fd
        else:
            self.path = name or str(getattr(out, "name", "<stream>"))
            self._stream = out
            self._cuttable = False
        self._pending: list[bytes] = []
        self._npending = 0
        self._good = 0  # bytes of complete lines written so far
        self.events_written = 0
        self.header_written = False
        self.failed: OSError | None = None
        self.unwritten = 0  # events not written since `failed`
        self.closed = False

    def write_header(self, header: Header) -> None:
        self.header_written = True
        self._pending.append(dumps_header(header))
        self.flush()

    def write(self, ev: Event) -> None:
        self.write_many([ev])

    def write_many(self, evs: list[Event]) -> None:
        if not evs:
            return
        if self.failed is not None:
            self.unwritten += len(evs)
            return
        self._pending.append(b"".join(dumps_event(e) for e in evs))
        self._npending += len(evs)

    def flush(self, sync: bool = True) -> None:
        """Hand what is written to the OS (survives a crash of any process); with
        `sync`, also to the disk (survives a crash of the machine)."""
        data = b"".join(self._pending)
        n = self._npending
        self._pending, self._npending = [], 0
        if self.failed is not None or not data:
            return
        try:
            self._put(data)
        except OSError as exc:
            self.failed = exc
            self.unwritten += n
            self._cut_back()
            return
        self._good += len(data)
        self.events_written += n
        if sync and self._stream is None:
            with contextlib.suppress(OSError):  # EINVAL: a pipe, a terminal
                os.fsync(self._fd)

    def write_last(self, ev: Event) -> bool:
        """Write `ev` as the file's last line even after a failure (a disk may have room
        for one line again); True if it was written."""
        if self.failed is None:
            self.write(ev)
            self.flush()
            return self.failed is None
        try:
            self._put(dumps_event(ev))
        except OSError:
            self._cut_back()
            return False
        return True

    def _put(self, data: bytes) -> None:
        if self._stream is not None:
            self._stream.write(data)
            self._stream.flush()
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def _cut_back(self) -> None:
        """A regular file ends at its last complete line again (a part-written batch
        is removed; a stream, or a descriptor we were given, is not cut)."""
        if self._cuttable:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._good)
                os.lseek(self._fd, self._good, os.SEEK_SET)

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        if self._stream is None:
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def fileno(self) -> int:
        return self._fd if self._stream is None else self._stream.fileno()
