"""`analyze -d fds`: leaked descriptors in plain words, then every pipe and socket.

The analysis is :func:`proctrace_bcc.fds.analyze_fds` (rules in its module doc and in
docs/fds.md); this module only words it.  :func:`report_data` gives the same content
as JSON-able data for other renderers (the HTML report).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from proctrace_bcc.fds import Channel, FdReport, Holding, Leak, Waiter, analyze_fds
from proctrace_bcc.recording import Recording
from proctrace_bcc.render import oneline
from proctrace_bcc.tree import ExecSpan, Process, ProcessTree

NEEDS_EVENTS = False

LABEL_MAX = 60
CHAIN_MAX = 6  # longer chains show their first 2 and last 3 processes

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
        at: int | None = None) -> str:
    """``sleep 300 (pid 42)``; with fds: ``bash (pid 41, fds 1, 3)``.

    With `at`, the process is named by the program it ran at that time, and by the
    one it ran last too when they differ: ``bash (pid 40, later dirname)``.
    """
    inner = f"pid {p.pid}"
    if fds:
        inner += f", {_fds(fds)}"
    shown = label(p) if full else name(p)
    if at is not None:
        then = oneline(_words(p, at)[0])
        if then != name(p):
            shown = then
            inner += f", later {name(p)}"
    return f"{shown} ({inner})"


def _fds(fds: Sequence[int]) -> str:
    return ("fd " if len(fds) == 1 else "fds ") + ", ".join(str(f) for f in fds)


def _and(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _t(ns: int, t0: int) -> str:
    return f"+{(ns - t0) / 1e9:.3f}s"


# ---------------------------------------------------------------------------
# Sentences


def _what(ch: Channel, ends: Sequence[str]) -> str:
    if ch.kind == "pipe":
        end = f"{_and(list(ends))} end, " if ends else ""
        return f"a pipe ({end}{ch.name})"
    return f"a socket ({ch.name})"


def _chain_words(lk: Leak) -> str:
    chain = lk.chain
    if not chain:
        return "it inherited it directly"
    nxt = [q for q, _ in chain[1:]] + [lk.process]
    items = [who(q, fds, at=n.start) for (q, fds), n in zip(chain, nxt, strict=True)]
    if len(items) > CHAIN_MAX:
        items = [*items[:2], f"{len(items) - 5} more", *items[-3:]]
    return "it inherited it through " + _and(items)


def _waiter_words(w: Waiter, depth: int = 0) -> str:
    return who(w.holding.process, w.fds)


def _downstream(ws: Sequence[Waiter]) -> list[str]:
    out: list[str] = []
    for w in ws:
        for ch, readers in w.downstream:
            out.append(f"{_and([_waiter_words(r) for r in readers])} "
                       f"{'waits' if len(readers) == 1 else 'wait'} in turn on the output of "
                       f"{name(w.holding.process)} (pid {w.holding.process.pid}, {ch.name})")
            out.extend(_downstream(readers))
    return out


def leak_lines(lk: Leak, t0: int) -> list[str]:
    """One leak as a sentence and its consequences (first line unindented)."""
    p, ch = lk.process, lk.channel
    if ch.rule == "outside":
        origin = (f"that came from outside the recording ({who(lk.source)}, the first process, "
                  "was started with it)")
    else:
        first = (lk.chain[0][0] if lk.chain else lk.process).start
        origin = f"that {who(lk.source, at=first)} opened"
    lines = [f"{who(p, full=True)} holds {_fds(lk.fds)}, {_what(ch, lk.ends)} {origin}; "
             f"{_chain_words(lk)}."]
    if lk.alive:
        lines.append(f"    {name(p)} was still running when the recording ended.")
    else:
        assert p.exit is not None and lk.source.exit is not None
        lines.append(f"    {name(p)} held it until it exited at {_t(p.exit.timestamp, t0)}, "
                     f"after {who(lk.source)} had exited at {_t(lk.source.exit.timestamp, t0)}.")
    if lk.waiting:
        verb = "is" if len(lk.waiting) == 1 else "are"
        lines.append(f"    {_and([_waiter_words(w) for w in lk.waiting])} {verb} still waiting "
                     f"on the read end of {ch.name}.")
        lines.extend(f"    {s}." for s in _downstream(lk.waiting))
    elif lk.alive and ch.kind == "pipe" and ("write" in lk.ends):
        lines.append("    No recorded process still holds the read end.")
    if lk.others:
        items = [who(h.process, [f.fd for f in h.fds_at_end()]) for h in lk.others]
        lines.append(f"    Also still holding the same end: {_and(items)}.")
    return lines


_RULES = {
    "seen": "seen holding it first",
    "ancestor": "nearest common ancestor of its holders, never seen holding it",
    "parent": "it held it when it forked {child}",
    "first-seen": "first seen holding it (its holders share no ancestor)",
}


def opener_words(ch: Channel) -> str:
    if ch.rule == "outside":
        assert ch.entered_by is not None
        return f"came from outside the recording (the first process, {who(ch.entered_by)}, " \
               "was started with it)"
    assert ch.opener is not None
    why = _RULES[ch.rule]
    at = min(h.since for h in ch.holders)
    if ch.rule == "parent":
        child = next((h.process for h in ch.holders if h.process.parent is ch.opener), None)
        why = why.format(child=who(child) if child is not None else "a holder")
    return f"opened by {who(ch.opener, at=at)}: {why}"


def _from(h: Holding, t0: int) -> str:
    if h.since_fork:
        return f"{_t(h.since, t0)} fork"
    s = h.sightings[0]
    return f"{_t(s.time, t0)} {s.source}"


def _until(h: Holding, t0: int) -> str:
    if h.closed_before is not None:
        return f"closed by {_t(h.closed_before, t0)}"
    if h.holds_at_end:
        return "still open" if h.snapshot_at_end else "alive at end"
    ex = h.process.exit
    return f"{_t(ex.timestamp, t0)} exit" if ex is not None else "?"


def channel_lines(ch: Channel, t0: int, leakers: set[int],
                  waiters: set[tuple[int, int]]) -> list[str]:
    lines = [f"{ch.name}  {opener_words(ch)}"]
    rows = [("pid", "fds", "end", "from", "until", "command")]
    for h in ch.holders:
        p = h.process
        note = ""
        if id(p) in leakers:
            note = "   <- leaked"
        elif (id(ch), id(p)) in waiters:
            note = "   <- waiting"
        cmd = label(p)
        if not p.execs:
            cmd += f" (fork of pid {p.parent.pid}, never exec'd)" if p.parent else " (no exec)"
        rows.append((str(p.pid), ",".join(str(f) for f in h.fds), "+".join(h.ends) or "?",
                     _from(h, t0), _until(h, t0), cmd + note))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        cells = [r[0].rjust(widths[0]), *(r[i].ljust(widths[i]) for i in range(1, 5)), r[5]]
        lines.append("    " + "  ".join(cells).rstrip())
    return lines


def _waiter_ids(ch: Channel, ws: Iterable[Waiter]) -> Iterator[tuple[int, int]]:
    """(channel, process) pairs: who waits on which pipe."""
    for w in ws:
        yield id(ch), id(w.holding.process)
        for down, readers in w.downstream:
            yield from _waiter_ids(down, readers)


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def report_lines(rep: FdReport, tree: ProcessTree) -> Iterator[str]:
    t0 = tree.start
    h = tree.header
    cmd = oneline(" ".join(h.command)) if h is not None and h.command else ""
    if not rep.has_data:
        yield "No descriptor data in this recording: record it with `proctrace-bcc record --fds`."
        return
    pipes = sum(1 for c in rep.channels if c.kind == "pipe")
    socks = len(rep.channels) - pipes
    end = tree.end_event
    ended = f"; the recording ended ({end.reason}) at {_t(end.timestamp, t0)}" if end else ""
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
        yield "Leaked descriptors: none (no process kept an inherited pipe or socket, fd 3 and"
        yield "up, open after the process it came from had exited or when the recording ended)."
    yield ""
    open_end = sum(1 for c in rep.channels if c.open_at_end)
    yield f"Pipes and sockets: {len(rep.channels)} ({open_end} still open at the end)"
    leakers = {id(lk.process) for lk in rep.leaks}
    waiters = {i for lk in rep.leaks for i in _waiter_ids(lk.channel, lk.waiting)}
    leaked = {id(lk.channel) for lk in rep.leaks}
    order = sorted(rep.channels, key=lambda c: (id(c) not in leaked, not c.open_at_end))
    for ch in order:
        yield ""
        yield from channel_lines(ch, t0, leakers, waiters)


def render(rec: Recording, tree: ProcessTree) -> Iterator[str]:
    for line in report_lines(analyze_fds(tree), tree):
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
        "alive": lk.alive, "waiting": [w.holding.process.pid for w in lk.waiting],
        "text": [s.strip() for s in leak_lines(lk, t0)],
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


__all__ = ["NEEDS_EVENTS", "label", "leak_lines", "name", "render", "report_data", "who"]
