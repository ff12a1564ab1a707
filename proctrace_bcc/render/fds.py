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
    TestRef,
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
from proctrace_bcc.render._common import subtree_title
from proctrace_bcc.render.names import image, label, name, program_words
from proctrace_bcc.render.tests import test_words
from proctrace_bcc.tree import Process, ProcessTree

NEEDS_EVENTS = False
CHANNELS_MAX = 20  # pipes and sockets tabled without --all
HOLDERS_MAX = 20  # holders per table without --all

# Why "none": the leak rule in one sentence (docs/fds.md; the HTML report says it too).
NO_LEAKS = ("no process kept an inherited pipe or socket open long after the process it "
            "came from had exited while another waited on the other end, nor one at fd 3 "
            "and up when the recording ended")



# ---------------------------------------------------------------------------
# Naming processes for people


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
    if image(p) is None and not p.command:
        # known only as a parent (the shell that ran `record`): its pid is its name
        return f"pid {p.pid}" + (f" ({inner.removeprefix(f'pid {p.pid}, ')})"
                                 if inner != f"pid {p.pid}" else "")
    shown = label(p) if full else name(p)
    if at is not None:
        then = oneline(program_words(p, at)[0])
        if then != name(p):
            shown = then
            inner += f", later {name(p)}"
    return f"{shown} ({inner})"


def words(seg: Segment) -> str:
    """A segment of a finding in words: its text, or the process it names."""
    if isinstance(seg, str):
        return seg
    if isinstance(seg, TestRef):
        return test_words(seg.test)
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
                  waiters: set[tuple[int, int]], full: bool = True) -> list[str]:
    """A pipe's or socket's table; unless `full`, its first HOLDERS_MAX holders (those
    marked leaked or waiting first), then how many more."""
    lines = [f"{ch.name}  {opener_words(ch)}"]
    rows = [("pid", "fds", "end", "from", "until", "command")]
    holders = ch.holders
    if not full and len(holders) > HOLDERS_MAX:
        marked = [h for h in holders
                  if id(h.process) in leakers or (id(ch), id(h.process)) in waiters]
        holders = (marked + [h for h in holders if h not in marked])[:HOLDERS_MAX]
    for h in holders:
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
    if len(holders) < len(ch.holders):
        lines.append(f"    … and {len(ch.holders) - len(holders):,} more holders "
                     "(--all lists them)")
    return lines


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def report_lines(rep: FdReport, tree: ProcessTree, full: bool = True) -> Iterator[str]:
    """The report; unless `full`, the table of pipes and sockets is bounded
    (CHANNELS_MAX, HOLDERS_MAX each), the leaks are always all there."""
    t0 = tree.start
    h = tree.header
    cmd = subtree_title(tree) or (shell_argv(h.command) if h is not None and h.command else "")
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
    outside = sum(1 for c in rep.channels if c.rule == "outside")
    came = f", {outside} from outside the recording" if outside else ""
    yield f"Pipes and sockets: {len(rep.channels)} ({open_end} still open at the end{came})"
    leakers = {id(lk.process) for lk in rep.leaks}
    waiters = {(id(ch), id(w.process)) for lk in rep.leaks for ch, w in lk.waiters()}
    leaked = {id(lk.channel) for lk in rep.leaks}
    # Leaked first, then the recording's own (open at the end first, then the most
    # shared), then those that came from outside (the terminal's, the CI runner's:
    # held by nearly everyone).
    order = sorted(rep.channels, key=lambda c: (id(c) not in leaked, c.rule == "outside",
                                                not c.open_at_end, -len(c.holders)))
    shown = order if full else order[:CHANNELS_MAX]
    for ch in shown:
        yield ""
        yield from channel_lines(ch, t0, leakers, waiters, full)
    if len(shown) < len(order):
        yield ""
        yield (f"… and {len(order) - len(shown):,} more pipes and sockets "
               "(--all lists them)")


def hang_lines(rec: Recording, tree: ProcessTree) -> list[str]:
    """The hang snapshot's waiting chain (:mod:`proctrace_bcc.hang`), indented by depth."""
    rep = analyze_hang(tree, rec.events)
    if rep is None:
        return []
    return [heading(rep, tree.start),
            *("    " * (depth + 1) + text(line) for depth, line in hang_sentences(rep))]


def render(rec: Recording, tree: ProcessTree, full: bool = False) -> Iterator[str]:
    for line in report_lines(analyze_fds(tree), tree, full):
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
