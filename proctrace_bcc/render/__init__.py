"""Renderers: one module per `analyze -d MODE`, and helpers they share.

What each mode needs (events, a tree, or only membership; color) and how `analyze`
calls it is declared in :mod:`proctrace_bcc.render.registry`.

Strings from the kernel may hold invalid UTF-8 (surrogate escapes): renderers show
them with :func:`oneline` or :func:`proctrace_bcc.events.display`.
"""

from __future__ import annotations

import re

from proctrace_bcc.events import display

# What a terminal must not be given raw: C0 controls, DEL, C1 controls, and the bidi
# overrides, isolates and marks (they reorder what follows), line/paragraph separators.
_UNSAFE = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[{_UNSAFE}]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\e"}
# The same characters in UTF-8 JSON text (only inside strings: UTF-8 is self-synchronizing).
_JSON_UNSAFE = re.compile(rb"\x7f|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xa8-\xae]"
                          rb"|\xe2\x81[\xa6-\xa9]")


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    n = ord(c)
    return _NAMED.get(c) or (f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}")


def oneline(s: str) -> str:
    """A byte-exact string as one line a terminal shows as it is: invalid bytes as \\xNN,
    C0/DEL/C1 controls as \\xNN (\\n \\t \\r \\e by name), bidi controls as \\uNNNN.

    Every text of a recording that a person's terminal shows goes through this."""
    if s.isascii() and s.isprintable():
        return s  # the common case, checked in C
    s = display(s)
    if _CONTROL.search(s) is None:
        return s
    return _CONTROL.sub(_escape, s)


def _json_escape(m: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % ord(m.group().decode("utf-8"))


def json_safe(text: bytes) -> bytes:
    """UTF-8 JSON with DEL, C1 and bidi characters escaped (``\\u009b``): orjson escapes
    only C0.  Still the same JSON value."""
    if text.isascii() and b"\x7f" not in text:
        return text  # the common case, in C (the regex would try every byte)
    return _JSON_UNSAFE.sub(_json_escape, text)


# Arguments a shell reads as they are: these characters only (not empty).
_PLAIN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@%+=:,./_-"
_PLAIN_ARG = re.compile(f"[{re.escape(_PLAIN_CHARS)}]+")
_PLAIN_BYTES = _PLAIN_CHARS.encode()
_ANSI_C = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\E"}


def _ansi_c_char(c: str) -> str:
    n = ord(c)
    if 0xDC80 <= n <= 0xDCFF:  # an invalid byte (surrogateescape)
        return f"\\x{n - 0xDC00:02x}"
    if c in _ANSI_C:
        return _ANSI_C[c]
    if _CONTROL.match(c):
        return f"\\x{n:02x}" if n < 0x80 else f"\\u{n:04x}"
    return c


def shell_word(arg: str) -> str:
    """One argument as a POSIX shell word that reads back to exactly it: as is when plain,
    else '...', or $'...' (bash, zsh, ksh) when it holds controls, bidi characters or
    invalid bytes; nothing in it acts on a terminal."""
    if _PLAIN_ARG.fullmatch(arg):
        return arg
    if (arg.isascii() and arg.isprintable()) or (_CONTROL.search(arg) is None
                                                 and display(arg) == arg):
        return _single_quoted(arg)
    return "$'" + "".join(_ansi_c_char(c) for c in arg) + "'"


def shell_argv(argv: list[str]) -> str:
    """An argv as one shell command line a person can read unambiguously, copy and run
    (see shell_word): every renderer shows argv with this."""
    line = " ".join(argv)
    if line.isascii():
        if "" not in argv and (line.encode().translate(None, _PLAIN_BYTES)
                               == b" " * (len(argv) - 1)):
            return line  # every argument plain: only the separators are not (in C)
        if line.isprintable():  # plain, or '...' (shell_word, inlined)
            plain = _PLAIN_ARG.fullmatch
            return " ".join([a if plain(a) else _single_quoted(a) for a in argv])
    return " ".join([shell_word(a) for a in argv])


def _single_quoted(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


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


__all__ = ["errno_name", "fmt_duration", "json_safe", "oneline", "shell_argv", "shell_word"]
