"""The live status line `record` draws on a terminal's stderr."""

from __future__ import annotations

import sys
import time

INTERVAL_S = 0.25  # redrawn at most this often
_CLEAR = "\r\x1b[2K"


class StatusLine:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._at = 0.0

    def show(self, seen: int, running: int, events: int, lost: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._at < INTERVAL_S:
            return
        self._at = now
        sys.stderr.write(f"{_CLEAR}[proctrace-bcc] {seen} processes seen, {running} running, "
                         f"{events} events, {lost} lost")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write(_CLEAR)
            sys.stderr.flush()
