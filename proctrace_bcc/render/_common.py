"""Helpers shared by the html and chrome-trace renderers."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from proctrace_bcc.events import Event, SetPGID, join_cmdline
from proctrace_bcc.render import oneline, shell_argv
from proctrace_bcc.tree import ExecSpan, Process, ProcessTree

# Outcome classes, in the order the html report's legend uses them.
OK, NONZERO, SIGNALED, RUNNING, UNKNOWN = 0, 1, 2, 3, 4


def outcome(p: Process) -> int:
    """How a process ended: exit 0, non-zero, signal, never exited, exited with unknown status."""
    e = p.exit
    if e is None:
        return RUNNING
    if e.signal is not None:
        return SIGNALED
    if e.exit_code is None:
        return UNKNOWN
    return OK if e.exit_code == 0 else NONZERO


def exit_lost(p: Process, tree: ProcessTree) -> bool:
    """No Exit for p, though the recording ended with p not among those still running:
    its Exit was lost (not "never exited")."""
    e = tree.end_event
    return e is not None and p.exit is None and p.pid not in e.running


@dataclass(slots=True)
class Span:
    """One bar: [start, end] of an image; `image` is None before the first exec."""

    start: int
    end: int
    image: ExecSpan | None
    label: str


def spans(p: Process, tree_end: int) -> list[Span]:
    """The process's exec spans, with the same bounds and labels as Process.exec_spans."""
    end = p.end_time(tree_end)
    out: list[Span] = []
    t = p.start
    image: ExecSpan | None = None
    label = p.inherited_command or f"<pid {p.pid}>"
    for ex in p.execs:
        if ex.timestamp > t:
            out.append(Span(t, ex.timestamp, image, label))
        t, image, label = ex.timestamp, ex, ex.cmdline
    out.append(Span(t, max(t, end), image, label))
    return out


def quoted_argv(image: ExecSpan) -> str:
    """An image's argv as a shell command line (render.shell_argv); its cmdline (made
    safe for a terminal) when argv was not recorded."""
    if image.argv is None:
        return oneline(image.cmdline)
    return shell_argv(image.argv)


def subtree_title(tree: ProcessTree) -> str | None:
    """What a title names when `-p` chose a subtree of a recording of CMD rooted
    elsewhere than CMD: its root, "ARGV (pid N)"; None otherwise (a system-wide
    recording's title names the subtree's root already, as its `ingest` cut does)."""
    h = tree.header
    if (h is None or h.root_pid is None or len(tree.roots) != 1
            or tree.roots[0].pid == h.root_pid):
        return None
    root = tree.roots[0]
    if not root.execs:
        return f"pid {root.pid}"
    return f"{quoted_argv(root.execs[-1])} (pid {root.pid})"


def header_command(tree: ProcessTree, rows: list[Process]) -> str:
    h = tree.header
    sub = subtree_title(tree)
    if sub is not None:
        return sub
    if h is not None and h.command:
        return oneline(join_cmdline(h.command))
    return oneline(rows[0].command) if rows else ""


def tree_rows(tree: ProcessTree) -> list[Process]:
    """Every process of the tree once, in tree order (roots in order, depth first)."""
    seen: set[int] = set()
    out: list[Process] = []
    for p in tree.walk():
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def concurrency(rows: Iterable[Process], tree_end: int) -> tuple[list[int], list[int]]:
    """Processes alive over time as a step function: value n[k] holds from t[k] to t[k+1].

    A process is alive on [start, end) (end = exit, or the recording's end).
    """
    deltas: dict[int, int] = {}
    for p in rows:
        s, e = p.start, p.end_time(tree_end)
        if e <= s:
            continue
        deltas[s] = deltas.get(s, 0) + 1
        deltas[e] = deltas.get(e, 0) - 1
    ts: list[int] = []
    ns: list[int] = []
    cur = 0
    for t in sorted(deltas):
        d = deltas[t]
        if d == 0 and ts:
            continue
        cur += d
        ts.append(t)
        ns.append(cur)
    return ts, ns


class ProcessLocator:
    """Finds which process of the tree a pid designated at a given time (PID reuse aware)."""

    def __init__(self, rows: Iterable[Process], tree_end: int) -> None:
        self._by_pid: dict[int, list[Process]] = {}
        for p in rows:
            self._by_pid.setdefault(p.pid, []).append(p)
        self._starts: dict[int, list[int]] = {}
        for pid, ps in self._by_pid.items():
            ps.sort(key=lambda q: q.start)
            self._starts[pid] = [q.start for q in ps]
        self._end = tree_end

    def at(self, pid: int, t: int) -> Process | None:
        ps = self._by_pid.get(pid)
        if not ps:
            return None
        i = bisect.bisect_right(self._starts[pid], t) - 1
        if i < 0:
            return None
        p = ps[i]
        if p.exit is not None and p.exit.timestamp < t:
            return None
        return p


def event_pid(ev: Event) -> int | None:
    """The pid an event is about (the target of setpgid), None for global events."""
    if isinstance(ev, SetPGID):
        return ev.target_pid
    pid = getattr(ev, "pid", None)
    return pid if isinstance(pid, int) else None
