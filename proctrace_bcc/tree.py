"""The process tree built from a recording's events.

Processes are keyed by (pid, start) where start is the fork timestamp (or the
first time the pid was seen, for processes that existed before the recording),
so PID reuse inside one recording never merges two processes.  A process keeps
the parent it was forked by, even if it is later reparented to init or a
subreaper.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from proctrace_bcc.codec import Slow, event_from_obj
from proctrace_bcc.events import (
    End,
    Event,
    ExecFailed,
    Exit,
    FdInfo,
    FdSnapshot,
    Header,
    Lost,
)
from proctrace_bcc.lineage import Lineage, Subtree


@dataclass(slots=True)
class ExecSpan:
    """One program image a process ran, from its exec to the next exec or exit."""

    timestamp: int
    cmdline: str
    argv: list[str] | None
    filename: str | None
    interpreter: list[str] | None
    truncated: bool
    fds: list[FdInfo] | None = None
    env: dict[str, str] | None = None  # the chosen variables at this exec (record --env)


@dataclass(eq=False, slots=True)
class Process:
    pid: int
    start: int  # fork timestamp, or first time seen
    ppid: int | None = None
    parent: Process | None = None
    fork_time: int | None = None  # None: existed before the recording started
    inherited_command: str | None = None  # the parent's command at fork
    execs: list[ExecSpan] = field(default_factory=list)
    failed_execs: list[ExecFailed] = field(default_factory=list)
    exit: Exit | None = None
    pgid_history: list[tuple[int, int]] = field(default_factory=list)  # (time, pgid)
    sid_history: list[tuple[int, int]] = field(default_factory=list)  # (time, sid)
    children: list[Process] = field(default_factory=list)
    uid: int | None = None
    fd_snapshot: FdSnapshot | None = None
    depth: int = 0

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start)

    @property
    def command(self) -> str:
        """What a person calls this process: its last exec's cmdline, else its parent's."""
        if self.execs:
            return self.execs[-1].cmdline
        return self.inherited_command or f"<pid {self.pid}>"

    @property
    def exited(self) -> bool:
        return self.exit is not None

    @property
    def exit_time(self) -> int | None:
        return self.exit.timestamp if self.exit is not None else None

    @property
    def pgid(self) -> int | None:
        return self.pgid_history[-1][1] if self.pgid_history else None

    @property
    def sid(self) -> int | None:
        return self.sid_history[-1][1] if self.sid_history else None

    @property
    def failed(self) -> bool:
        """Exited non-zero or by a signal."""
        e = self.exit
        return e is not None and (e.signal is not None or (e.exit_code or 0) != 0)

    def status(self) -> str:
        """Short outcome: 'exit 0', 'exit 7', 'SIGKILL', 'SIGSEGV (core)', 'running', 'exited'."""
        e = self.exit
        if e is None:
            return "running"
        if e.signal is not None:
            return signal_name(e.signal) + (" (core)" if e.core_dumped else "")
        if e.exit_code is None:
            return "exited"
        return f"exit {e.exit_code}"

    def end_time(self, tree_end: int) -> int:
        return self.exit.timestamp if self.exit is not None else tree_end

    def duration(self, tree_end: int) -> int:
        return self.end_time(tree_end) - self.start

    def exec_spans(self, tree_end: int) -> list[tuple[int, int, str]]:
        """(start, end, label) per image: before the first exec the parent's image runs."""
        end = self.end_time(tree_end)
        spans: list[tuple[int, int, str]] = []
        t = self.start
        label = self.inherited_command or f"<pid {self.pid}>"
        for ex in self.execs:
            if ex.timestamp > t:
                spans.append((t, ex.timestamp, label))
            t, label = ex.timestamp, ex.cmdline
        spans.append((t, max(t, end), label))
        return spans

    # The node operations of lineage.Node: the rules (lineage.Lineage) call them.

    @property
    def adoptable(self) -> bool:
        return self.fork_time is None and not (self.execs or self.children)

    def forked(self, t: int, pgid: int, sid: int | None) -> None:
        self.fork_time = t
        self._joined(t, pgid, sid)

    def execed(self, t: int, cmdline: str, argv: list[str] | None, filename: str | None,
               interpreter: list[str] | None, truncated: bool, fds: list[FdInfo] | None,
               env: dict[str, str] | None, uid: int | None, pgid: int,
               sid: int | None) -> None:
        self.execs.append(ExecSpan(t, cmdline, argv, filename, interpreter, truncated, fds,
                                   env))
        if uid is not None:
            self.uid = uid
        self._joined(t, pgid, sid)

    def exec_body(self, t: int, body: dict[str, Any]) -> None:
        self.execed(t, body["cmdline"], body["argv"], body["filename"], body["interpreter"],
                    body["truncated"], None, None, body["uid"], body["pgid"], body["sid"])

    def exec_failed(self, t: int, pid: int, filename: str, errno: int,
                    truncated: bool) -> None:
        self.failed_execs.append(ExecFailed(t, pid, filename, errno, truncated))

    def ended(self, t: int, pid: int, ppid: int, pgid: int, exit_code: int | None,
              signal: int | None, core_dumped: bool) -> None:
        self.exit = Exit(t, pid, ppid, pgid, exit_code, signal, core_dumped)

    def exit_body(self, t: int, body: dict[str, Any]) -> None:
        self.exit = Exit(t, body["pid"], body["ppid"], body["pgid"], body["exit_code"],
                         body["signal"], body["core_dumped"])

    def set_pgid(self, t: int, pgid: int | None) -> None:
        h = self.pgid_history
        if pgid is not None and (not h or h[-1][1] != pgid):
            h.append((t, pgid))

    def set_sid(self, t: int, sid: int | None) -> None:
        h = self.sid_history
        if sid is not None and (not h or h[-1][1] != sid):
            h.append((t, sid))

    def _joined(self, t: int, pgid: int, sid: int | None) -> None:
        """set_pgid and set_sid at once (a fork or an exec names both)."""
        h = self.pgid_history
        if not h or h[-1][1] != pgid:
            h.append((t, pgid))
        if sid is not None:
            h = self.sid_history
            if not h or h[-1][1] != sid:
                h.append((t, sid))

    def set_fd_snapshot(self, ev: FdSnapshot) -> None:
        self.fd_snapshot = ev

    def walk(self) -> Iterator[Process]:
        """This process and its descendants, depth first, children in fork order."""
        stack = [self]
        while stack:
            p = stack.pop()
            yield p
            stack.extend(reversed(p.children))


def signal_name(sig: int) -> str:
    import signal as _signal

    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


@dataclass(slots=True)
class ProcessTree:
    processes: list[Process]  # in order of first appearance (fork order)
    roots: list[Process]
    header: Header | None = None
    start: int = 0  # first event timestamp (normally 0)
    end: int = 0  # last event timestamp (End event if any)
    lost: int = 0
    end_event: End | None = None
    lost_events: list[Lost] = field(default_factory=list)

    def walk(self) -> Iterator[Process]:
        for r in self.roots:
            yield from r.walk()

    def find(self, pid: int) -> list[Process]:
        """Every process that had this pid (PID reuse can give several)."""
        return [p for p in self.processes if p.pid == pid]

    @property
    def running(self) -> list[Process]:
        return [p for p in self.processes if p.exit is None]


class _Builder(Lineage[Process], Subtree[Process]):
    """The tree: the rules of lineage.Lineage over tree.Process; the subtree of
    `select_pid` (lineage.Subtree) tracked as it grows (None: no selection)."""

    def __init__(self, root_pid: int | None = None, select_pid: int | None = None) -> None:
        Subtree.__init__(self, select_pid)
        self.root_pid = root_pid
        self.processes: list[Process] = []
        self.live: dict[int, Process] = {}  # pid -> newest process with that pid

    def _new(self, pid: int, t: int, ppid: int | None) -> Process:
        parent = self.live.get(ppid) if ppid else None
        p = Process(pid=pid, start=t, ppid=ppid, parent=parent)
        if parent is not None:
            parent.children.append(p)
            p.depth = parent.depth + 1
            p.inherited_command = parent.command
        self.processes.append(p)
        self.live[pid] = p
        self.place(p, pid, parent)
        return p

    def _drop(self, node: Process) -> None:
        self.processes.remove(node)
        self.forget(node)


def build_tree(events: Iterable[Event], header: Header | None = None) -> ProcessTree:
    """Build the tree from events in timestamp order."""
    tree, _ = build_tree_with_owners(events, header)
    return tree


def build_tree_with_owners(events: Iterable[Event], header: Header | None = None
                           ) -> tuple[ProcessTree, list[Process | None]]:
    """Like build_tree, and also the process each event belongs to (None: global)."""
    root_pid = header.root_pid if header is not None and not header.raw else None
    b = _Builder(root_pid)
    owners: list[Process | None] = []
    first: int | None = None
    last = 0
    lost = 0
    lost_events: list[Lost] = []
    end_event: End | None = None
    for ev in events:
        if first is None:
            first = ev.timestamp
        last = max(last, ev.timestamp)
        if isinstance(ev, Lost):
            lost += ev.count
            lost_events.append(ev)
        elif isinstance(ev, End):
            end_event = ev
        owners.append(b.add(ev))
    procs = b.processes
    roots = [p for p in procs if p.parent is None]
    if header is not None and header.root_pid is not None and not header.raw:
        preferred = [p for p in roots if p.pid == header.root_pid]
        if preferred:
            roots = preferred + [p for p in roots if p.pid != header.root_pid]
    tree = ProcessTree(processes=procs, roots=roots, header=header,
                       start=first if first is not None else 0, end=last, lost=lost,
                       end_event=end_event, lost_events=lost_events)
    return tree, owners


# ---------------------------------------------------------------------------
# The tree from parsed dicts (proctrace_bcc.analysis)


class FastBuilder(_Builder):
    """tree._Builder fed with parsed dicts (lineage.Lineage.add_body, the same rules);
    tracks the selected subtree while building.  tests/unit/test_stream.py checks it
    gives the tree of build_tree."""

    def __init__(self, select_pid: int | None) -> None:
        _Builder.__init__(self, select_pid=select_pid)

    def add_obj(self, t: int, tag: str, body: dict[str, Any]) -> Process | None:
        """Add one event body; ValueError (from event_from_obj) if it is malformed."""
        try:
            return self.add_body(t, tag, body)
        except Slow:
            pass
        ev = event_from_obj(tag, body)
        if isinstance(ev, (Lost, End)):
            return None
        return self.add(ev)
