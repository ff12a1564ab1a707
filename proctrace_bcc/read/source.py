"""The input of one reading: a file, or stdin spooled to a temporary file."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from typing import IO

from proctrace_bcc.errors import RecordingError


class Source:
    """A recording to read, possibly more than once.

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
        """The file, from its start; RecordingError (named as the user named it) if it
        cannot be opened."""
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
