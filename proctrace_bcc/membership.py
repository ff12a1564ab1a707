"""Which events belong to the analysed subtree, without building the tree.

For `-d sequential`, `-d by-process` and `ingest`: the lineage rules of the tree
builders (:mod:`proctrace_bcc.lineage`, :class:`proctrace_bcc.tree.FastBuilder`: same
interface) but only a few bytes per live pid, so memory does not grow with the
recording.  tests/unit/test_stream.py checks it against the reference.
"""

from __future__ import annotations

from typing import Any

from proctrace_bcc.codec import event_from_obj
from proctrace_bcc.events import End, FdInfo, FdSnapshot, Lost
from proctrace_bcc.lineage import Lineage, Subtree
from proctrace_bcc.tree import Process


class Light:
    """What Membership keeps of a process: enough for the identity rules of
    lineage.Lineage (its lineage.Node operations keep nothing else)."""

    __slots__ = ("adoptable", "exit", "first", "inherited", "last", "pid", "ppid", "seq")

    def __init__(self, pid: int, ppid: int | None, seq: int) -> None:
        self.exit: bool | None = None  # True once exited (tree.Process.exit: the Exit)
        self.adoptable = True  # not forked in the recording, no exec, no child yet
        self.pid = pid
        self.ppid = ppid  # as tree.Process.ppid
        self.seq = seq  # creation order (tree.ProcessTree.processes order)
        self.inherited: str | None = None  # tree.Process.inherited_command
        self.first: str | None = None  # first exec's cmdline (or filename)
        self.last: str | None = None  # last exec's cmdline

    @property
    def command(self) -> str:
        """tree.Process.command."""
        if self.last is not None:
            return self.last
        return self.inherited or f"<pid {self.pid}>"

    def forked(self, t: int, pgid: int, sid: int | None) -> None:
        self.adoptable = False

    def execed(self, t: int, cmdline: str, argv: list[str] | None, filename: str | None,
               interpreter: list[str] | None, truncated: bool, fds: list[FdInfo] | None,
               env: dict[str, str] | None, uid: int | None, pgid: int,
               sid: int | None) -> None:
        self.adoptable = False

    def exec_body(self, t: int, body: dict[str, Any]) -> None:
        self.adoptable = False

    def exec_failed(self, t: int, pid: int, filename: str, errno: int,
                    truncated: bool) -> None:
        pass

    def ended(self, t: int, pid: int, ppid: int, pgid: int, exit_code: int | None,
              signal: int | None, core_dumped: bool) -> None:
        self.exit = True

    def exit_body(self, t: int, body: dict[str, Any]) -> None:
        self.exit = True

    def set_pgid(self, t: int, pgid: int | None) -> None:
        pass

    def set_sid(self, t: int, sid: int | None) -> None:
        pass

    def set_fd_snapshot(self, ev: FdSnapshot) -> None:
        pass


class Named(Light):
    """A Light that keeps its commands, for `by-process` (as tree.Process would)."""

    __slots__ = ()

    def execed(self, t: int, cmdline: str, argv: list[str] | None, filename: str | None,
               interpreter: list[str] | None, truncated: bool, fds: list[FdInfo] | None,
               env: dict[str, str] | None, uid: int | None, pgid: int,
               sid: int | None) -> None:
        self.adoptable = False
        self._named(cmdline, filename)

    def exec_body(self, t: int, body: dict[str, Any]) -> None:
        self.adoptable = False
        self._named(body["cmdline"], body["filename"])

    def _named(self, cmdline: str, filename: str | None) -> None:
        if self.first is None:
            self.first = cmdline or filename or ""
        self.last = cmdline


class Membership(Lineage[Light], Subtree[Light]):
    """Which events belong to the selected subtree, without building the tree.

    The rules of lineage.Lineage over Light nodes, with FastBuilder's interface; the
    subtree from lineage.Subtree.
    """

    heavy = False  # Light keeps no contents: an Exec's env needs no decoding

    def __init__(self, select_pid: int | None, info: bool = False) -> None:
        super().__init__(select_pid)
        self.info = info  # keep the commands (for by-process)
        self.node = Named if info else Light
        self.live: dict[int, Light] = {}
        self.count = 0  # processes seen
        self.processes: list[Process] = []  # none: there is no tree

    def _new(self, pid: int, t: int, ppid: int | None) -> Light:
        p = self.node(pid, ppid, self.count)
        self.count += 1
        live = self.live
        par = live.get(ppid) if ppid else None
        old = live.get(pid)
        if old is not None and not self.info:
            self.members.discard(old)  # keeps memory bounded by live pids
        live[pid] = p
        if par is not None:
            par.adoptable = False
            if self.info:
                p.inherited = par.command
        self.place(p, pid, par)
        return p

    def _drop(self, node: Light) -> None:
        self.forget(node)
        self.count -= 1

    def state(self, pid: int) -> Light | None:
        # ProcState and Signal belong to no process here (as before lineage.Lineage;
        # the tree gives them theirs): sequential -p and by-process show them as before.
        return None

    def add_obj(self, t: int, tag: str, body: dict[str, Any]) -> Light | None:
        """Check one body (event_from_obj: ValueError says what is wrong), then apply it."""
        ev = event_from_obj(tag, body)
        if isinstance(ev, (Lost, End)):
            return None
        return self.add(ev)
