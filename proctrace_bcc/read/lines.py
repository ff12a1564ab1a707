"""A recording's lines: the Header, then each event line parsed once, in chunks.

Each line is parsed with orjson exactly once and the event bodies are kept as the
parsed dicts.  Errors name the file and line; a truncated last line (the recorder was
killed mid-write) is a warning.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO, Any

import orjson

from proctrace_bcc.codec import header_from_obj
from proctrace_bcc.errors import RecordingError
from proctrace_bcc.events import EVENT_TYPES, Header
from proctrace_bcc.read.order import Obj
from proctrace_bcc.read.source import Source
from proctrace_bcc.schema import LINE_DECODERS, checked

# Bytes of lines read and parsed at a time.
CHUNK_BYTES = 1 << 16
# The longest line read (docs/format.md, "Validation and limits"); a longer one is an
# error, so that no input (/dev/zero) makes the reader hold more than this.
MAX_LINE = 16 << 20


NOT_A_RECORDING = ("not a proctrace recording: expected a first line {\"Header\": {...}} "
                   "(written by proctrace-bcc record), or an event of the original proctrace "
                   "such as {\"Fork\": {...}}")


# The warning for a last line cut short (the recorder was killed mid-write).
TRUNCATED = "truncated last line ignored"


class LineTooLong(Exception):
    """A line longer than MAX_LINE; `index` is its position among the lines before."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def line_chunks(f: IO[bytes], limit: int = MAX_LINE) -> Iterator[list[bytes]]:
    """The file's lines (each ending with b"\\n", except a last one cut short), in lists
    of about CHUNK_BYTES; LineTooLong when a line exceeds `limit` bytes."""
    pending: list[bytes] = []  # the start of a line not ended yet
    held = 0
    seen = 0
    while True:
        block = f.read(CHUNK_BYTES)
        if not block:
            if pending:
                yield [b"".join(pending)]
            return
        cut = block.rfind(b"\n")
        if cut < 0:
            held += len(block)
            if held > limit:
                raise LineTooLong(seen)
            pending.append(block)
            continue
        if pending:
            pending.append(block[:cut + 1])
            block = b"".join(pending) + block[cut + 1:]
            cut = held + cut
            pending = []
        lines = io.BytesIO(block[:cut + 1]).readlines()  # in C, like a file's
        if len(lines[0]) > limit:
            raise LineTooLong(seen)
        rest = block[cut + 1:]
        if rest:
            pending.append(rest)
        held = len(rest)
        seen += len(lines)
        yield lines


class Lines:
    """The header (read at once) and the event lines of a recording."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.name = source.name
        self.header: Header | None = None
        self.header_line: int | None = None
        self.legacy = False  # no Header: the original proctrace's formats
        self.warnings: list[str] = []
        self.last_line = 0
        self._read_header()

    def bad(self, lineno: int | None, msg: str) -> RecordingError:
        return RecordingError(self.name, lineno, msg)

    def _objects(self, f: IO[bytes]) -> Iterator[tuple[int, Any]]:
        """(line number, parsed JSON) of every line but blank ones; a truncated last line
        is noted (a warning) and ends it; other invalid JSON is the error naming the
        line.  `last_line` follows the lines read."""
        for chunk in self._chunks(f):
            for line in chunk:
                self.last_line += 1
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    if self._undecodable(self.last_line, line, exc):
                        return
                    continue
                yield self.last_line, obj

    def _chunks(self, f: IO[bytes]) -> Iterator[list[bytes]]:
        """line_chunks, its LineTooLong as the one-line error naming the line."""
        try:
            yield from line_chunks(f)
        except LineTooLong as exc:
            raise self.bad(exc.index + 1, f"line longer than {MAX_LINE >> 20} MiB "
                           "(not a recording, or a damaged one)") from None

    def _read_header(self) -> None:
        with self.source.open() as f:
            for lineno, obj in self._objects(f):
                if isinstance(obj, dict) and len(obj) == 1 and "Header" in obj:
                    try:
                        self.header = header_from_obj(obj["Header"])
                    except (ValueError, TypeError) as exc:
                        raise self.bad(lineno, str(exc)) from None
                    self.header_line = lineno
                elif self._legacy_start(obj):
                    self.legacy = True
                else:
                    raise self.bad(lineno, NOT_A_RECORDING)
                self.last_line = 0
                return
        if self.warnings:  # the only line, cut short: nothing else to analyze
            raise RecordingError(self.name, None, "empty recording (no complete line)")
        raise RecordingError(self.name, None, "empty recording (no events)")

    @staticmethod
    def _legacy_start(obj: object) -> bool:
        """The first line of a file without a Header: one event (the original's kinds,
        or ours)."""
        from proctrace_bcc.read.legacy import KINDS

        return type(obj) is dict and len(obj) == 1 and (next(iter(obj)) in KINDS
                                                        or next(iter(obj)) in EVENT_TYPES)

    def _truncated(self, lineno: int, exc: Exception) -> None:
        self.warnings.append(f"{self.name}:{lineno}: {TRUNCATED} ({exc})")

    def _undecodable(self, lineno: int, line: bytes, exc: Exception) -> bool:
        """A line orjson refused: False for a blank line (skip it), True for a
        truncated last line (noted; stop reading); anything else is an error."""
        if not line.strip():
            return False
        if not line.endswith(b"\n"):
            self._truncated(lineno, exc)
            return True
        raise self.bad(lineno, f"not valid JSON ({exc})") from None

    def _not_one_key(self, lineno: int) -> RecordingError:
        return self.bad(lineno, "expected an object with exactly one key (the event kind)")

    def parsed(self) -> Iterator[tuple[list[Obj], bool]]:
        """Event lines of one of our recordings in file order, checked, in chunks.

        Yields (chunk, in_order): in_order is False when a timestamp in the chunk is
        smaller than the one before it (in the chunk or the previous chunk).  A usual
        line is parsed and checked against the schema in one step
        (schema.LINE_DECODERS, chosen by the kind the line starts with); any line that
        step refuses is taken again by :meth:`_careful`, which words the error or
        passes the body on as a schema.Irregular.
        """
        decoders = LINE_DECODERS
        careful = self._careful
        skip = self.header_line or 0
        lineno = 0
        prev = -(1 << 62)
        with self.source.open() as f:
            for lines in self._chunks(f):
                if lineno < skip:  # the Header and the blank lines before it
                    n = min(len(lines), skip - lineno)
                    lineno += n
                    lines = lines[n:]
                chunk: list[Obj] = []
                ap = chunk.append
                in_order = True
                first = lineno + 1
                for lineno, line in enumerate(lines, first):
                    try:
                        tag, decode, body_of = decoders[line[2:line.find(b'"', 2)]]
                        body = body_of(decode(line))
                    except (KeyError, ValueError):  # not a usual line (msgspec's errors too)
                        o = careful(lineno, line)
                        if o is False:
                            continue
                        if o is True:
                            break
                        tag, body = o
                    ts = body["timestamp"]
                    if ts < prev:
                        in_order = False
                    else:
                        prev = ts
                    ap((ts, lineno, tag, body))
                yield chunk, in_order
        self.last_line = lineno

    def _careful(self, lineno: int, line: bytes) -> tuple[str, dict[str, Any]] | bool:
        """One line the quick step of :meth:`parsed` refused, checked step by step: its
        (kind, body), False to skip it (a blank line), True for a truncated last line
        (stop reading); anything else is the error naming the line."""
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return self._undecodable(lineno, line, exc)
        if type(obj) is not dict or len(obj) != 1:
            raise self._not_one_key(lineno)
        ((tag, body),) = obj.items()
        if tag not in EVENT_TYPES:
            if tag == "Header":
                raise self.bad(lineno, "Header must be the first line")
            raise self.bad(lineno, f"unknown event kind {tag!r}")
        if type(body) is not dict:
            raise self.bad(lineno, f"{tag}: body must be an object")
        try:
            return tag, checked(tag, body)
        except ValueError as exc:
            raise self.bad(lineno, str(exc)) from None

    def tagged(self) -> Iterator[tuple[int, str, Any]]:
        """(line number, tag, body) of every line, unchecked beyond the JSON shape (for
        the original's formats, whose tags are not ours)."""
        self.last_line = 0
        with self.source.open() as f:
            for lineno, obj in self._objects(f):
                if not isinstance(obj, dict) or len(obj) != 1:
                    raise self._not_one_key(lineno)
                ((tag, body),) = obj.items()
                if tag == "Header":
                    raise self.bad(lineno, "Header must be the first line")
                yield lineno, tag, body
