"""Renderers: one module per `analyze -d MODE`, and helpers they share.

What each mode needs (events, a tree, or only membership; color) and how `analyze`
calls it is declared in :mod:`proctrace_bcc.render.registry`.

Strings from the kernel may hold invalid UTF-8 (surrogate escapes): renderers show
them with :func:`oneline` or :func:`proctrace_bcc.events.display`.
"""

from __future__ import annotations

import re

from proctrace_bcc.events import display

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\e"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    return _NAMED.get(c, f"\\x{ord(c):02x}")


def oneline(s: str) -> str:
    """A byte-exact string as one printable line: invalid bytes and controls as \\xNN."""
    if s.isascii() and s.isprintable():
        return s  # the common case, checked in C
    s = display(s)
    if _CONTROL.search(s) is None:
        return s
    return _CONTROL.sub(_escape, s)


def fmt_duration(ns: int) -> str:
    """A short human duration: 840 ns, 12 µs, 3.4 ms, 1.25 s, 2m05s, 1h02m."""
    if ns < 1_000:
        return f"{ns} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.0f} µs"
    if ns < 1_000_000_000:
        v = ns / 1_000_000
        return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"
    s = ns / 1_000_000_000
    if s < 60:
        return f"{s:.2f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def errno_name(n: int) -> str:
    import errno

    if n == 0:
        return "unknown error"
    return errno.errorcode.get(n, f"errno {n}")


__all__ = ["errno_name", "fmt_duration", "oneline"]
