"""A recording's lines: the Header, then each event line parsed once, in chunks.

Each line is parsed with orjson exactly once and the event bodies are kept as the
parsed dicts.  Errors name the file and line; a truncated last line (the recorder was
killed mid-write) is a warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from proctrace_bcc.codec import header_from_obj
from proctrace_bcc.errors import RecordingError
from proctrace_bcc.events import EVENT_TYPES, Header
from proctrace_bcc.read.order import Obj
from proctrace_bcc.read.source import Source

# Bytes of lines read and parsed at a time.
CHUNK_BYTES = 1 << 16


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
                    raise self.bad(lineno, f"not valid JSON ({exc})") from None
                if isinstance(obj, dict) and len(obj) == 1 and "Header" in obj:
                    try:
                        self.header = header_from_obj(obj["Header"])
                    except (ValueError, TypeError) as exc:
                        raise self.bad(lineno, str(exc)) from None
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
        raise self.bad(lineno, f"not valid JSON ({exc})") from None

    def _not_one_key(self, lineno: int) -> RecordingError:
        return self.bad(lineno, "expected an object with exactly one key (the event kind)")

    def parsed(self) -> Iterator[tuple[list[Obj], bool]]:
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
                            raise self.bad(lineno, "Header must be the first line")
                        raise self.bad(lineno, f"unknown event kind {tag!r}")
                    if type(body) is not dict:
                        raise self.bad(lineno, f"{tag}: body must be an object")
                    ts = body.get("timestamp")
                    if type(ts) is not int:
                        if ts is None:
                            raise self.bad(lineno, f"{tag}: missing field 'timestamp'")
                        raise self.bad(lineno,
                                       f"{tag}.timestamp must be an integer, got {ts!r}")
                    if ts < prev:
                        in_order = False
                    else:
                        prev = ts
                    ap((ts, lineno, tag, body))
                yield chunk, in_order
        self.last_line = lineno

    def tagged(self) -> Iterator[tuple[int, str, Any]]:
        """(line number, tag, body) of every line, unchecked beyond the JSON shape (for
        the original's formats, whose tags are not ours)."""
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
                    raise self.bad(lineno, "Header must be the first line")
                yield lineno, tag, body
        self.last_line = lineno
