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

from proctrace_bcc.codec import Slow, event_from_obj, plain_exec
from proctrace_bcc.events import (
    End,
    Event,
    Exec,
    ExecFailed,
    Exit,
    FdInfo,
    FdSnapshot,
    Fork,
    Header,
    Lost,
    ProcState,
    SetPGID,
    SetSID,
    Signal,
)
from proctrace_bcc.lineage import Subtree


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


class _Builder:
    """The reference rules: what each event does to the processes (see lineage)."""

    def __init__(self, root_pid: int | None = None) -> None:
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
        return p

    def _get(self, pid: int, t: int, ppid: int | None) -> Process:
        p = self.live.get(pid)
        if p is None or p.exit is not None:
            p = self._new(pid, t, ppid)
        elif p.ppid is None and ppid:
            p.ppid = ppid
        return p

    def _adopt(self, pid: int) -> Process | None:
        """The process a Fork of `pid` replaces, if any: seen (e.g. an out-of-order
        event) before its fork, with nothing of its own yet.  It leaves the tree."""
        old = self.live.get(pid)
        if old is not None and old.exit is None and old.fork_time is None and not (
            old.execs or old.children
        ):
            self.processes.remove(old)
            return old
        return None

    @staticmethod
    def _set_pgid(p: Process, t: int, pgid: int | None) -> None:
        if pgid is not None and (not p.pgid_history or p.pgid_history[-1][1] != pgid):
            p.pgid_history.append((t, pgid))

    @staticmethod
    def _set_sid(p: Process, t: int, sid: int | None) -> None:
        if sid is not None and (not p.sid_history or p.sid_history[-1][1] != sid):
            p.sid_history.append((t, sid))

    def add(self, ev: Event) -> Process | None:
        owner: Process | None
        t = ev.timestamp
        if isinstance(ev, Fork):
            if ev.child_pid == self.root_pid and ev.parent_pid not in self.live:
                # The recorder forked the root: it is not part of the tree.
                owner = self._new(ev.child_pid, t, None)
                owner.ppid = ev.parent_pid
                owner.fork_time = t
                pgid = ev.child_pgid if ev.child_pgid is not None else ev.parent_pgid
                self._set_pgid(owner, t, pgid)
                self._set_sid(owner, t, ev.sid)
                return owner
            parent = self._get(ev.parent_pid, t, None)
            self._set_pgid(parent, t, ev.parent_pgid)
            self._adopt(ev.child_pid)
            owner = self._new(ev.child_pid, t, ev.parent_pid)
            owner.fork_time = t
            self._set_pgid(owner, t, ev.child_pgid if ev.child_pgid is not None else ev.parent_pgid)
            self._set_sid(owner, t, ev.sid)
        elif isinstance(ev, Exec):
            owner = self._get(ev.pid, t, ev.ppid)
            owner.execs.append(ExecSpan(t, ev.cmdline, ev.argv, ev.filename, ev.interpreter,
                                        ev.truncated, ev.fds))
            if ev.uid is not None:
                owner.uid = ev.uid
            self._set_pgid(owner, t, ev.pgid)
            self._set_sid(owner, t, ev.sid)
        elif isinstance(ev, ExecFailed):
            owner = self._get(ev.pid, t, None)
            owner.failed_execs.append(ev)
        elif isinstance(ev, Exit):
            owner = self._get(ev.pid, t, ev.ppid)
            owner.exit = ev
        elif isinstance(ev, SetPGID):
            owner = self._get(ev.target_pid, t, None)
            self._set_pgid(owner, t, ev.pgid)
        elif isinstance(ev, SetSID):
            owner = self._get(ev.pid, t, ev.ppid)
            self._set_pgid(owner, t, ev.pgid)
            self._set_sid(owner, t, ev.sid)
        elif isinstance(ev, FdSnapshot):
            owner = self.live.get(ev.pid)
            if owner is not None:
                owner.fd_snapshot = ev
        elif isinstance(ev, (ProcState, Signal)):
            owner = self.live.get(ev.pid)  # kept with its process's subtree (hang.py)
        else:
            owner = None
        return owner


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


class FastBuilder(_Builder, Subtree[Process]):
    """tree._Builder fed with parsed dicts; tracks the selected subtree while building.

    ``_fast`` applies the reference rules of ``_Builder.add`` to the dicts, inlining
    ``_get``, ``_set_pgid`` and ``_set_sid`` for the hot kinds (Exec, Fork) only;
    tests/unit/test_stream.py checks both give the same tree.
    """

    def __init__(self, select_pid: int | None) -> None:
        _Builder.__init__(self)
        Subtree.__init__(self, select_pid)

    def _new(self, pid: int, t: int, ppid: int | None) -> Process:
        p = _Builder._new(self, pid, t, ppid)
        self.place(p, pid, p.parent)
        return p

    def _adopt(self, pid: int) -> Process | None:
        old = _Builder._adopt(self, pid)
        if old is not None:
            self.forget(old)
        return old

    def add_obj(self, t: int, tag: str, body: dict[str, Any]) -> Process | None:
        """Add one event body; ValueError (from event_from_obj) if it is malformed."""
        try:
            return self._fast(t, tag, body)
        except (Slow, KeyError):
            pass
        ev = event_from_obj(tag, body)
        if isinstance(ev, (Lost, End)):
            return None
        return self.add(ev)

    def _fast(self, t: int, tag: str, body: dict[str, Any]) -> Process | None:
        # Every check happens before the first change of state, so that a body that
        # falls back to the reference path is never applied twice.
        if tag == "Exec":
            if not plain_exec(body):
                raise Slow
            pid, ppid, pgid = body["pid"], body["ppid"], body["pgid"]
            cmdline = body["cmdline"]
            argv = body.get("argv")
            filename = body.get("filename")
            interp = body.get("interpreter")
            sid = body.get("sid")
            uid = body.get("uid")
            owner = self.live.get(pid)
            if owner is None or owner.exit is not None:
                owner = self._new(pid, t, ppid)
            elif owner.ppid is None and ppid:
                owner.ppid = ppid
            owner.execs.append(ExecSpan(t, cmdline, argv, filename, interp,
                                        body.get("truncated", False), None))
            if uid is not None:
                owner.uid = uid
            h = owner.pgid_history
            if not h or h[-1][1] != pgid:
                h.append((t, pgid))
            if sid is not None:
                h = owner.sid_history
                if not h or h[-1][1] != sid:
                    h.append((t, sid))
            return owner
        if tag == "Fork":
            ppid, cpid, ppgid = body["parent_pid"], body["child_pid"], body["parent_pgid"]
            if type(ppid) is not int or type(cpid) is not int or type(ppgid) is not int:
                raise Slow
            cpgid = body.get("child_pgid")
            sid = body.get("sid")
            live = self.live
            parent = live.get(ppid)
            if parent is None or parent.exit is not None:
                parent = self._new(ppid, t, None)
            h = parent.pgid_history
            if not h or h[-1][1] != ppgid:
                h.append((t, ppgid))
            self._adopt(cpid)
            owner = self._new(cpid, t, ppid)
            owner.fork_time = t
            owner.pgid_history.append((t, cpgid if cpgid is not None else ppgid))
            if sid is not None:
                owner.sid_history.append((t, sid))
            return owner
        if tag == "Exit":
            pid, ppid, pgid = body["pid"], body["ppid"], body["pgid"]
            if type(pid) is not int or type(ppid) is not int or type(pgid) is not int:
                raise Slow
            ev = Exit(t, pid, ppid, pgid, body.get("exit_code"), body.get("signal"),
                      body.get("core_dumped", False))
            owner = self._get(pid, t, ppid)
            owner.exit = ev
            return owner
        if tag == "ExecFailed":
            pid, filename, err = body["pid"], body["filename"], body["errno"]
            if type(pid) is not int or type(err) is not int or type(filename) is not str:
                raise Slow
            owner = self._get(pid, t, None)
            owner.failed_execs.append(ExecFailed(t, pid, filename, err,
                                                 body.get("truncated", False)))
            return owner
        if tag == "SetPGID":
            pid, ppid, pgid, target = body["pid"], body["ppid"], body["pgid"], body["target_pid"]
            if (type(pid) is not int or type(ppid) is not int or type(pgid) is not int
                    or type(target) is not int):
                raise Slow
            owner = self._get(target, t, None)
            self._set_pgid(owner, t, pgid)
            return owner
        if tag == "SetSID":
            pid, ppid, pgid = body["pid"], body["ppid"], body["pgid"]
            if type(pid) is not int or type(ppid) is not int or type(pgid) is not int:
                raise Slow
            sid = body["sid"]
            owner = self._get(pid, t, ppid)
            self._set_pgid(owner, t, pgid)
            self._set_sid(owner, t, sid)
            return owner
        raise Slow
