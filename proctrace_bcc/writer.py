"""Writing a recording: the Header line, then one event per line, streamed.

Every `flush()` leaves a complete, valid NDJSON file, so a crash of anything but the
disk leaves a readable recording.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

from proctrace_bcc.codec import dumps_event, dumps_header
from proctrace_bcc.events import Event, Header


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
