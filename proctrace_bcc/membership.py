"""Which events belong to the analysed subtree, without building the tree.

For `-d sequential`, `-d by-process` and `ingest`: the lineage rules of the tree
builders (:mod:`proctrace_bcc.lineage`, :class:`proctrace_bcc.tree.FastBuilder`: same
interface) but only a few bytes per live pid, so memory does not grow with the
recording.  tests/unit/test_stream.py checks it against the reference.
"""

from __future__ import annotations

from typing import Any

from proctrace_bcc.codec import INT_FIELDS, Slow, event_from_obj, plain_exec
from proctrace_bcc.events import End, Lost
from proctrace_bcc.lineage import GLOBAL_KINDS, Subtree
from proctrace_bcc.tree import Process


class Light:
    """What Membership keeps of a process: enough for tree._Builder's identity rules,
    and with ``info`` what `by-process` shows of it (as tree.Process would)."""

    __slots__ = ("adoptable", "exited", "first", "inherited", "last", "pid", "ppid", "seq")

    def __init__(self, pid: int, ppid: int | None, seq: int) -> None:
        self.exited = False
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


class Membership(Subtree[Light]):
    """Which events belong to the selected subtree, without building the tree.

    The attribution rules of tree._Builder with FastBuilder's interface; the subtree
    from lineage.Subtree.
    """

    def __init__(self, select_pid: int | None, info: bool = False) -> None:
        super().__init__(select_pid)
        self.info = info  # keep the commands (for by-process)
        self.live: dict[int, Light] = {}
        self.count = 0  # processes seen
        self.processes: list[Process] = []  # none: there is no tree

    def _new(self, pid: int, ppid: int | None) -> Light:
        p = Light(pid, ppid, self.count)
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

    def _get(self, pid: int, ppid: int | None) -> Light:
        p = self.live.get(pid)
        if p is None or p.exited:
            return self._new(pid, ppid)
        if p.ppid is None and ppid:
            p.ppid = ppid
        return p

    def _exec(self, p: Light, cmdline: str, filename: str | None) -> None:
        if p.first is None:
            p.first = cmdline or filename or ""
        p.last = cmdline

    def add_obj(self, t: int, tag: str, body: dict[str, Any]) -> Light | None:
        """Check one body (event_from_obj: ValueError says what is wrong), then apply it."""
        ev = event_from_obj(tag, body)
        if isinstance(ev, (Lost, End)):
            return None
        return self._apply(tag, ev.__getattribute__)

    def _fast(self, t: int, tag: str, body: dict[str, Any]) -> Light | None:
        # The checks of FastBuilder._fast, then _apply inlined for the common kinds.
        live = self.live
        if tag == "Exec":
            if not plain_exec(body):
                raise Slow
            pid, ppid = body["pid"], body["ppid"]
            p = live.get(pid)  # _get, inlined (as for Exit)
            if p is None or p.exited:
                p = self._new(pid, ppid)
            elif p.ppid is None and ppid:
                p.ppid = ppid
            p.adoptable = False
            if self.info:
                self._exec(p, body["cmdline"], body.get("filename"))
            return p
        if tag == "ExecFailed":
            pid = body["pid"]
            if (type(pid) is not int or type(body["errno"]) is not int
                    or type(body["filename"]) is not str):
                raise Slow
            return self._get(pid, None)
        if tag == "Exit":
            pid, ppid = body["pid"], body["ppid"]
            if type(pid) is not int or type(ppid) is not int or type(body["pgid"]) is not int:
                raise Slow
            p = live.get(pid)
            if p is None or p.exited:
                p = self._new(pid, ppid)
            elif p.ppid is None and ppid:
                p.ppid = ppid
            p.exited = True
            return p
        if tag in INT_FIELDS and tag not in GLOBAL_KINDS:
            for k in INT_FIELDS[tag]:
                if type(body[k]) is not int:
                    raise Slow
            return self._apply(tag, body.__getitem__)
        raise Slow

    def _apply(self, tag: str, get: Any) -> Light | None:
        if tag == "Fork":
            parent_pid, child = get("parent_pid"), get("child_pid")
            self._get(parent_pid, None)
            old = self.live.get(child)
            if old is not None and not old.exited and old.adoptable:
                # tree._Builder's adoption: the process seen before its fork is replaced.
                self.forget(old)
                self.count -= 1
            p = self._new(child, parent_pid)
            p.adoptable = False
            return p
        if tag == "Exec":
            p = self._get(get("pid"), get("ppid"))
            p.adoptable = False
            if self.info:
                self._exec(p, get("cmdline"), get("filename"))
            return p
        if tag == "Exit":
            p = self._get(get("pid"), get("ppid"))
            p.exited = True
            return p
        if tag == "ExecFailed":
            return self._get(get("pid"), None)
        if tag == "SetPGID":
            return self._get(get("target_pid"), None)
        if tag == "SetSID":
            return self._get(get("pid"), get("ppid"))
        if tag == "FdSnapshot":
            return self.live.get(get("pid"))
        return None
