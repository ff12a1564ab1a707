"""`analyze -d fds`: leaked descriptors in plain words, then every pipe and socket, then
the hang snapshot's waiting chain when the recording has one.

The analysis is :func:`proctrace_bcc.fds.analyze_fds` (rules in its module doc and in
docs/fds.md), its findings sentences of text and process references
(:class:`proctrace_bcc.fds.Ref`); this module names the processes (:func:`words`) and
lays out the report.  The HTML report uses the same naming, the holders' commands and
the words of the holding states (:data:`SINCE_WORDS`, :data:`UNTIL_WORDS`,
:data:`MARK_WORDS`).  :func:`report_data` gives the content as JSON-able data.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Iterator, Sequence
from enum import IntEnum
from typing import Any

from proctrace_bcc.fds import (
    Channel,
    FdReport,
    Holding,
    Leak,
    Line,
    Segment,
    Since,
    Until,
    analyze_fds,
    fd_list,
    leak_sentences,
    opener_sentence,
    rel_time,
)
from proctrace_bcc.hang import analyze_hang, hang_sentences, heading
from proctrace_bcc.read import Recording
from proctrace_bcc.render import oneline, shell_argv
from proctrace_bcc.tree import ExecSpan, Process, ProcessTree

NEEDS_EVENTS = False

LABEL_MAX = 60
# Why "none": the leak rule in one sentence (docs/fds.md; the HTML report says it too).
NO_LEAKS = ("no process kept an inherited pipe or socket open long after the process it "
            "came from had exited while another waited on the other end, nor one at fd 3 "
            "and up when the recording ended")

_INTERPRETERS = re.compile(
    r"^(?:sh|bash|dash|zsh|ksh|mksh|ash|fish|perl[0-9.]*|ruby[0-9.]*|node|nodejs|"
    r"python[0-9.]*|pypy[0-9.]*|tclsh[0-9.]*|lua[0-9.]*|php[0-9.]*)$")
_ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


# ---------------------------------------------------------------------------
# Naming processes for people


def _image(p: Process, t: int | None = None) -> ExecSpan | None:
    """The program image `p` runs at time t (default: its last): its exec, else its parent's."""
    q: Process | None = p
    while q is not None:
        spans = [e for e in q.execs if t is None or e.timestamp <= t]
        if spans:
            return spans[-1]
        t, q = q.start, q.parent
    return None


def _words(p: Process, t: int | None = None) -> tuple[str, list[str]]:
    """(program name, its arguments) as a person would say them.

    ``bash /usr/libexec/bats-core/bats x.bats`` is ``bats x.bats``; ``env A=1 make``
    is ``make``; ``python3 -m pytest -q`` is ``pytest -q``; ``bash -c CMD`` stays.
    """
    img = _image(p, t)
    if img is None:
        return (p.command or f"<pid {p.pid}>"), []
    argv = list(img.argv) if img.argv else img.cmdline.split(" ")
    if not argv:
        return img.cmdline or f"<pid {p.pid}>", []
    for _ in range(3):
        base = os.path.basename(argv[0])
        if base == "env":
            rest = argv[1:]
            while rest and (rest[0].startswith("-") or _ENV_ASSIGN.match(rest[0])):
                rest = rest[1:]
            if not rest:
                break
            argv = rest
            continue
        if _INTERPRETERS.match(base) and len(argv) > 1:
            if not argv[1].startswith("-"):
                argv = argv[1:]
            elif base.startswith(("python", "pypy")) and argv[1] == "-m" and len(argv) > 2:
                argv = argv[2:]
        break
    return os.path.basename(argv[0]) or argv[0], argv[1:]


def name(p: Process) -> str:
    """The program's short name: ``sleep``, ``bats``, ``bats-exec-test``."""
    return oneline(_words(p)[0])


def label(p: Process) -> str:
    """The short name and arguments, at most LABEL_MAX characters: ``sleep 300``."""
    prog, args = _words(p)
    s = oneline(" ".join([prog, *args]))
    return s if len(s) <= LABEL_MAX else s[:LABEL_MAX - 1] + "…"


def who(p: Process, fds: Sequence[int] | None = None, full: bool = False,
        at: int | None = None, note: str = "") -> str:
    """``sleep 300 (pid 42)``; with fds: ``bash (pid 41, fds 1, 3)``.

    With `at`, the process is named by the program it ran at that time, and by the
    one it ran last too when they differ: ``bash (pid 40, later dirname)``.  A `note`
    follows the pid and fds: ``bats (pid 41, pipe:[7])``.
    """
    inner = f"pid {p.pid}"
    if fds:
        inner += f", {fd_list(fds)}"
    if note:
        inner += f", {note}"
    shown = label(p) if full else name(p)
    if at is not None:
        then = oneline(_words(p, at)[0])
        if then != name(p):
            shown = then
            inner += f", later {name(p)}"
    return f"{shown} ({inner})"


def words(seg: Segment) -> str:
    """A segment of a finding in words: its text, or the process it names."""
    if isinstance(seg, str):
        return seg
    if seg.bare:
        return name(seg.process)
    return who(seg.process, seg.fds, full=seg.full, at=seg.at, note=seg.note)


def text(line: Line) -> str:
    return "".join(words(g) for g in line)


# ---------------------------------------------------------------------------
# Sentences and tables


def leak_lines(lk: Leak, t0: int) -> list[str]:
    """One leak as a sentence and its consequences (first line unindented)."""
    first, *more = leak_sentences(lk, t0)
    return [text(first), *("    " + text(line) for line in more)]


def opener_words(ch: Channel) -> str:
    return text(opener_sentence(ch))


class Mark(IntEnum):
    """A holder's mark in a pipe's table (the values are the HTML report's codes)."""

    NONE = 0
    LEAKED = 1  # it leaked this pipe or socket
    WAITING = 2  # it waits on a leaked write end (or in turn)


# The words of the holding states; {t} is the time (+1.250s here, the page's own format
# in the HTML report).
SINCE_WORDS = {Since.FORK: "{t} fork", Since.EXEC: "{t} exec", Since.END: "{t} end"}
UNTIL_WORDS = {Until.EXIT: "{t} exit", Until.CLOSED: "closed by {t}", Until.OPEN: "still open",
               Until.ALIVE: "alive at end", Until.UNKNOWN: "?"}
MARK_WORDS = {Mark.NONE: "", Mark.LEAKED: "leaked", Mark.WAITING: "waiting"}


def holder_command(p: Process) -> str:
    """A holder's command in a pipe's table: its label, and whether it never exec'd."""
    cmd = label(p)
    if not p.execs:
        cmd += f" (fork of pid {p.parent.pid}, never exec'd)" if p.parent else " (no exec)"
    return cmd


def ends_words(h: Holding) -> str:
    """The ends it held: ``read``, ``write``, ``read+write``; ``?`` when not recorded."""
    return "+".join(h.ends) or "?"


def _from(h: Holding, t0: int) -> str:
    return SINCE_WORDS[h.since_kind].format(t=rel_time(h.since, t0))


def _until(h: Holding, t0: int) -> str:
    u = h.until
    return UNTIL_WORDS[h.until_kind].format(t=rel_time(u, t0) if u is not None else "")


def channel_lines(ch: Channel, t0: int, leakers: set[int],
                  waiters: set[tuple[int, int]]) -> list[str]:
    lines = [f"{ch.name}  {opener_words(ch)}"]
    rows = [("pid", "fds", "end", "from", "until", "command")]
    for h in ch.holders:
        p = h.process
        mark = (Mark.LEAKED if id(p) in leakers
                else Mark.WAITING if (id(ch), id(p)) in waiters else Mark.NONE)
        note = f"   <- {MARK_WORDS[mark]}" if mark else ""
        rows.append((str(p.pid), ",".join(str(f) for f in h.fds), ends_words(h),
                     _from(h, t0), _until(h, t0), holder_command(p) + note))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        cells = [r[0].rjust(widths[0]), *(r[i].ljust(widths[i]) for i in range(1, 5)), r[5]]
        lines.append("    " + "  ".join(cells).rstrip())
    return lines


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def report_lines(rep: FdReport, tree: ProcessTree) -> Iterator[str]:
    t0 = tree.start
    h = tree.header
    cmd = shell_argv(h.command) if h is not None and h.command else ""
    if not rep.has_data:
        yield "No descriptor data in this recording: record it with `proctrace-bcc record --fds`."
        return
    pipes = sum(1 for c in rep.channels if c.kind == "pipe")
    socks = len(rep.channels) - pipes
    end = tree.end_event
    ended = (f"; the recording ended ({oneline(end.reason)}) at {rel_time(end.timestamp, t0)}"
             if end else "")
    yield (f"Descriptors{' of ' + cmd if cmd else ''}: {_plural(pipes, 'pipe')} and "
           f"{_plural(socks, 'socket')} seen in "
           f"{_plural(rep.processes_observed, 'process', 'processes')}{ended}.")
    yield ""
    if rep.leaks:
        yield f"Leaked descriptors: {len(rep.leaks)}"
        for lk in rep.leaks:
            yield ""
            yield from leak_lines(lk, t0)
    else:
        yield from textwrap.wrap(f"Leaked descriptors: none ({NO_LEAKS})", 80)
    yield ""
    open_end = sum(1 for c in rep.channels if c.open_at_end)
    yield f"Pipes and sockets: {len(rep.channels)} ({open_end} still open at the end)"
    leakers = {id(lk.process) for lk in rep.leaks}
    waiters = {(id(ch), id(w.process)) for lk in rep.leaks for ch, w in lk.waiters()}
    leaked = {id(lk.channel) for lk in rep.leaks}
    order = sorted(rep.channels, key=lambda c: (id(c) not in leaked, not c.open_at_end))
    for ch in order:
        yield ""
        yield from channel_lines(ch, t0, leakers, waiters)


def hang_lines(rec: Recording, tree: ProcessTree) -> list[str]:
    """The hang snapshot's waiting chain (:mod:`proctrace_bcc.hang`), indented by depth."""
    rep = analyze_hang(tree, rec.events)
    if rep is None:
        return []
    return [heading(rep, tree.start),
            *("    " * (depth + 1) + text(line) for depth, line in hang_sentences(rep))]


def render(rec: Recording, tree: ProcessTree) -> Iterator[str]:
    for line in report_lines(analyze_fds(tree), tree):
        yield line + "\n"
    hang = hang_lines(rec, tree)
    if hang:
        yield "\n"
        for line in hang:
            yield line + "\n"


def report_data(tree: ProcessTree) -> dict[str, Any]:
    """The same report as JSON-able data (for the HTML report's fds section).

    ``leaks``: one entry per leak, ``text`` being the lines `analyze -d fds` prints;
    ``channels``: one per pipe/socket with its opener sentence and holder rows.
    Times are nanoseconds from the recording's first event.
    """
    rep = analyze_fds(tree)
    t0 = tree.start
    leaks = [{
        "pid": lk.process.pid, "fds": lk.fds, "channel": lk.channel.name,
        "alive": lk.alive, "waiting": [w.process.pid for w in lk.waiting],
        "text": [text(line) for line in leak_sentences(lk, t0)],
    } for lk in rep.leaks]
    chans = [{
        "name": ch.name, "kind": ch.kind, "opener": opener_words(ch),
        "opener_pid": ch.opener.pid if ch.opener is not None else None,
        "open_at_end": bool(ch.open_at_end),
        "holders": [{
            "pid": hd.process.pid, "command": label(hd.process), "fds": hd.fds,
            "ends": hd.ends, "since": hd.since - t0, "since_fork": hd.since_fork,
            "until": (hd.until - t0) if hd.until is not None else None,
            "open_at_end": hd.holds_at_end,
        } for hd in ch.holders],
    } for ch in rep.channels]
    return {"has_data": rep.has_data, "leaks": leaks, "channels": chans}


__all__ = [
    "MARK_WORDS",
    "NEEDS_EVENTS",
    "NO_LEAKS",
    "SINCE_WORDS",
    "UNTIL_WORDS",
    "Mark",
    "ends_words",
    "hang_lines",
    "holder_command",
    "label",
    "leak_lines",
    "name",
    "opener_words",
    "render",
    "report_data",
    "text",
    "who",
    "words",
]
