"""Reading recordings: source (file or stdin) -> lines -> order -> events.

- :mod:`.source`: the file, or stdin spooled so it can be read twice;
- :mod:`.lines`: the Header, then each line parsed once into (timestamp, line, kind,
  body) tuples, in chunks;
- :mod:`.order`: those chunks in timestamp order (DIRECT, WINDOWED, ALL);
- :mod:`.legacy`: the original proctrace's formats, converted into our events.

:class:`Reader` puts them together; :func:`read_recording` returns a whole
:class:`Recording` of event objects.  Streaming analyses (proctrace_bcc.analysis) read the dicts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from proctrace_bcc.codec import event_to_obj, fast_event
from proctrace_bcc.errors import RecordingError
from proctrace_bcc.events import End, Event, Header
from proctrace_bcc.read.lines import TRUNCATED, Lines
from proctrace_bcc.read.order import (
    ALL,
    DIRECT,
    ORDERS,
    WINDOWED,
    Obj,
    OutOfOrder,
    in_order,
    reorder,
    sort_all,
)
from proctrace_bcc.read.source import Source
from proctrace_bcc.schema import checked


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


class Reader(Lines):
    """Header, legacy flag, warnings, and the events of a recording as dicts, in order."""

    def chunks(self, order: str = DIRECT) -> Iterator[list[Obj]]:
        """Events in timestamp order (ties in file order), in lists.

        `order` is how much disorder is tolerated: DIRECT none (events are passed on as
        read; an event older than the one before raises OutOfOrder), WINDOWED up to
        WINDOW events, ALL any (the whole file is sorted in memory).  The original's
        formats are converted whole, whatever the order.
        """
        if self.legacy:
            yield self._legacy()
        elif order == DIRECT:
            yield from in_order(self.parsed())
        elif order == ALL:
            yield from sort_all(self.parsed())
        elif order == WINDOWED:
            yield from reorder(self.parsed())
        else:
            raise ValueError(f"unknown order {order!r}")

    def _legacy(self) -> list[Obj]:
        from proctrace_bcc.read.legacy import ConversionError, LegacyReader

        conv = LegacyReader()
        for lineno, tag, body in self.tagged():
            try:
                conv.feed(lineno, tag, body)
            except (ValueError, KeyError, TypeError) as exc:
                raise self.bad(lineno, str(exc)) from None
        out: list[Obj] = []
        try:
            converted = conv.finish()
        except ConversionError as exc:
            raise self.bad(exc.lineno, str(exc)) from None
        for i, (lineno, ev) in enumerate(converted):
            ((tag, obj),) = event_to_obj(ev).items()
            try:
                obj = checked(tag, obj)  # what was converted holds to our schema
            except ValueError as exc:
                raise self.bad(lineno, str(exc)) from None
            out.append((ev.timestamp, i, tag, obj))
        return out

    def line_of(self, index: int) -> int | None:
        """The line number to name for an event (None for converted legacy events)."""
        return None if self.legacy else index

    @property
    def converted(self) -> bool:
        """The original's format: read as such, or converted into ours by `ingest`."""
        h = self.header
        return self.legacy or (h is not None and bool(h.options.get("legacy")))


def unfinished(header: Header | None, converted: bool, start: int, last: int) -> str | None:
    """The warning for one of our recordings without its End line (the recorder was
    killed, or its output cut): what it could not write is missing."""
    if header is None or converted:
        return None
    return (f"the recorder stopped without finishing (no End line): events after "
            f"+{max(0, last - start) / 1e9:.3f} s may be missing")


def warn_unfinished(warnings: list[str], header: Header | None, converted: bool, start: int,
                    last: int) -> None:
    """Add the `unfinished` warning, if any, to a reading's warnings: on the line of a
    truncated last line when there is one (the same cause: one line says both)."""
    w = unfinished(header, converted, start, last)
    if w is None:
        return
    if warnings and TRUNCATED in warnings[-1]:
        warnings[-1] += f"; {w}"
    else:
        warnings.append(w)


def read_recording(input: str | os.PathLike[str] | Source) -> Recording:
    """The whole recording in memory, events sorted by timestamp (ties: file order).

    A truncated last line (recorder killed mid-write) becomes a warning; any other bad
    line is a RecordingError naming file and line.  Files without a Header are the
    original proctrace's formats, converted by :mod:`proctrace_bcc.read.legacy`.
    """
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
        rec = Recording(r.name, r.header, events, r.warnings, r.converted)
        if events and rec.end is None:
            warn_unfinished(r.warnings, r.header, r.converted, events[0].timestamp,
                            events[-1].timestamp)
        return rec


__all__ = ["ALL", "DIRECT", "ORDERS", "WINDOWED", "OutOfOrder", "Reader", "Recording",
           "Source", "read_recording", "unfinished", "warn_unfinished"]
