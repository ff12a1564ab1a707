"""The live status line `record` draws on a terminal's stderr.

CMD shares that terminal and prints on it whenever it likes, so while CMD runs
the line is never drawn (a line redrawn with `\\r` between two of CMD's writes
garbles both).  It is drawn:

- once CMD has exited and the recorder waits for what is left of its tree:
  "bats exited 0 at +27.1 s; waiting for 2 processes still running: sleep 10
  (pid 8844), ...; --grace bounds this" (what is left may still print: the
  line is cut to the terminal's width and redrawn, never wrapped);
- without CMD (watching the whole machine), with the counts: nothing else
  prints on the terminal then.

Cleared when recording stops.  `-q`, or stderr not a terminal: never drawn.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

INTERVAL_S = 0.25  # redrawn at most this often
NAMED_MAX = 3  # leftovers named on the line; the others are counted
_CLEAR = "\r\x1b[2K"


def process_name(pid: int) -> str | None:
    """`pid`'s command line as /proc shows it now (its first words); None when it has
    exited (its Exit not yet read: the events are a moment behind) or is a zombie."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    words = [Path(argv[0].decode(errors="replace")).name] if argv and argv[0] else []
    words += [a.decode(errors="replace") for a in argv[1:3] if a]
    return " ".join(words) or None


def waiting_text(cmd: str, status: int | None, at_s: float, pids: list[int]) -> str | None:
    """What the recorder waits for once CMD has exited (`pids`: what the events say
    still runs); None when none of them still runs."""
    names = [(p, n) for p in pids if (n := process_name(p)) is not None]
    if not names:
        return None
    ended = f"exited {status}" if status is not None else "exited"
    named = ", ".join(f"{n} (pid {p})" for p, n in names[:NAMED_MAX])
    more = f" and {len(names) - NAMED_MAX} more" if len(names) > NAMED_MAX else ""
    what = "process" if len(names) == 1 else "processes"
    return (f"{cmd} {ended} at +{at_s:.1f} s; waiting for {len(names)} {what} still "
            f"running: {named}{more}; --grace bounds this")


class StatusLine:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._at = 0.0
        self._drawn = False

    def _draw(self, text: str | None) -> None:
        if text is None:
            self.clear()
            return
        import shutil  # only for a terminal (its import costs every run a few ms)

        width = shutil.get_terminal_size((80, 24)).columns
        line = f"[proctrace-bcc] {text}"
        if len(line) >= width:
            line = line[:max(1, width - 2)] + "…"
        sys.stderr.write(_CLEAR + line)
        sys.stderr.flush()
        self._drawn = True

    def counts(self, seen: int, running: int, events: int, lost: int) -> None:
        """Without CMD: the recording's counts."""
        if self.enabled and self._due():
            self._draw(f"{seen} processes seen, {running} running, {events} events, "
                       f"{lost} lost")

    def waiting(self, cmd: str, status: int | None, at_s: float, pids: list[int]) -> None:
        """CMD has exited; `pids` of its tree still run."""
        if self.enabled and pids and self._due():
            self._draw(waiting_text(cmd, status, at_s, pids))

    def _due(self) -> bool:
        """At most one redraw every INTERVAL_S (each reads /proc and writes)."""
        now = time.monotonic()
        if now - self._at < INTERVAL_S:
            return False
        self._at = now
        return True

    def clear(self) -> None:
        if self._drawn:
            sys.stderr.write(_CLEAR)
            sys.stderr.flush()
            self._drawn = False
