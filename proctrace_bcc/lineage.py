"""Which processes form the analysed subtree: the rules every builder shares.

The tree builders (:mod:`proctrace_bcc.tree`: a :class:`~proctrace_bcc.tree.Process` per
process) and :mod:`proctrace_bcc.membership` (a few bytes per process) both key a
process by (pid, start): a pid seen again after its exit, or forked again, is a new
process.  Both place each new process in the subtree with :class:`Subtree`, and select
the root and the events of the subtree with the functions below, so that what "a
process of the tree" means is decided here, for every mode.  What each event does to a
process and to the set of processes is :class:`Lineage`, over a :class:`Node` protocol
that the heavy and the light process both implement.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from proctrace_bcc.codec import Slow
from proctrace_bcc.events import (
    Event,
    Exec,
    ExecFailed,
    Exit,
    FdInfo,
    FdSnapshot,
    Fork,
    Header,
    ProcState,
    SetPGID,
    SetSID,
    Signal,
)

N = TypeVar("N")

# Kinds that belong to no process but are kept in every subtree.
GLOBAL_KINDS = frozenset({"Lost", "End"})


def select_pid(root_pid: int | None, header: Header | None) -> int | None:
    """The pid whose subtree is analysed: ``-p``, else the header's root (not for raw
    recordings), else None (everything; see first_fork_child for the original's files)."""
    if root_pid is not None:
        return root_pid
    if header is not None and header.root_pid is not None and not header.raw:
        return header.root_pid
    return None


def first_fork_child(tag: str, body: dict[str, Any]) -> int | None:
    """For the original's recordings without -p: it rendered the tree of the child of
    the first event when that is a Fork."""
    if tag == "Fork":
        child = body.get("child_pid")
        if type(child) is int:
            return child
    return None


class Subtree(Generic[N]):
    """The subtree of the first process with pid `select_pid`: it and every process
    forked by a member (None: no selection, `members` stays empty)."""

    def __init__(self, select_pid: int | None) -> None:
        self.select_pid = select_pid
        self.root: N | None = None
        self.members: set[N] = set()

    def place(self, node: N, pid: int, parent: N | None) -> None:
        """A new process `node` with `pid`, forked by `parent` (None: not seen)."""
        if self.select_pid is not None:
            if parent is not None and parent in self.members:
                self.members.add(node)
            elif self.root is None and pid == self.select_pid:
                self.root = node
                self.members.add(node)

    def forget(self, node: N) -> None:
        """`node` turned out not to be a process (replaced by the process of a fork)."""
        if node is self.root:
            self.root = None
        self.members.discard(node)

    def has(self, owner: N | None, tag: str) -> bool:
        """Whether an event of kind `tag` belonging to `owner` is in the subtree."""
        if self.select_pid is None:
            return True
        return owner in self.members if owner is not None else tag in GLOBAL_KINDS


# ---------------------------------------------------------------------------
# What each event does: the one set of rules, over a heavy or a light node.


class Node(Protocol):
    """What the rules read and change of a process (tree.Process keeps everything,
    membership.Light only its identity)."""

    ppid: int | None

    @property
    def exit(self) -> object:
        """None while it runs."""

    @property
    def adoptable(self) -> bool:
        """Seen before its fork, with nothing of its own yet (no exec, no child)."""

    def forked(self, t: int, pgid: int, sid: int | None) -> None:
        """It was forked at `t` (in the recording), in process group `pgid`."""

    def execed(self, t: int, cmdline: str, argv: list[str] | None, filename: str | None,
               interpreter: list[str] | None, truncated: bool, fds: list[FdInfo] | None,
               env: dict[str, str] | None, uid: int | None, pgid: int,
               sid: int | None) -> None:
        """It ran a new image at `t`, in process group `pgid`."""

    def exec_body(self, t: int, body: dict[str, Any]) -> None:
        """`execed`, from a plain Exec body (it reads the fields it keeps)."""

    def exec_failed(self, t: int, pid: int, filename: str, errno: int,
                    truncated: bool) -> None:
        """An exec of it failed."""

    def ended(self, t: int, pid: int, ppid: int, pgid: int, exit_code: int | None,
              signal: int | None, core_dumped: bool) -> None:
        """It ended."""

    def exit_body(self, t: int, body: dict[str, Any]) -> None:
        """`ended`, from a plain Exit body (it reads the fields it keeps)."""

    def set_pgid(self, t: int, pgid: int | None) -> None:
        """Its process group at `t` (None: not known)."""

    def set_sid(self, t: int, sid: int | None) -> None:
        """Its session at `t` (None: not known)."""

    def set_fd_snapshot(self, ev: FdSnapshot) -> None:
        """Its descriptors, as the recorder saw them."""


M = TypeVar("M", bound=Node)


class Lineage(Generic[M]):
    """The rules: what each event does to a process and to the set of processes.

    A process is keyed by (pid, start): an event of a pid whose newest process exited
    (PID reuse), or a fork of it, makes a new process; a process keeps the parent it
    was forked by.  A builder supplies the live processes and how a node is made and
    dropped; `add` (events) and `add_body` (parsed bodies, for the fast paths) dispatch
    each kind to the one rule of that kind.
    """

    root_pid: int | None = None  # its fork by the recorder makes it a root
    # The nodes keep the events' contents (tree.Process); light ones (membership.Light)
    # keep only what identity, exits and commands need: add_body gives them no more.
    heavy = True

    live: dict[int, M]  # pid -> newest process with that pid

    def _new(self, pid: int, t: int, ppid: int | None) -> M:
        """A new live process `pid`, forked by the live process `ppid` (if any)."""
        raise NotImplementedError

    def _drop(self, node: M) -> None:
        """`node` was no process: a fork replaced it (see `fork`)."""
        raise NotImplementedError

    def get(self, pid: int, t: int, ppid: int | None) -> M:
        """The live process `pid` (a new one if none, or its newest exited)."""
        p = self.live.get(pid)
        if p is None or p.exit is not None:
            return self._new(pid, t, ppid)
        if p.ppid is None and ppid:
            p.ppid = ppid
        return p

    def fork(self, t: int, parent_pid: int, child_pid: int, parent_pgid: int,
             child_pgid: int | None, sid: int | None) -> M:
        pgid = child_pgid if child_pgid is not None else parent_pgid
        live = self.live
        if child_pid == self.root_pid and parent_pid not in live:
            # The recorder forked the root: it is not part of the tree.
            owner = self._new(child_pid, t, None)
            owner.ppid = parent_pid
        else:
            self.get(parent_pid, t, None).set_pgid(t, parent_pgid)
            # The fork replaces a process seen before it (e.g. by an out-of-order event)
            # with nothing of its own yet.
            old = live.get(child_pid)
            if old is not None and old.exit is None and old.adoptable:
                self._drop(old)
            owner = self._new(child_pid, t, parent_pid)
        owner.forked(t, pgid, sid)
        return owner

    def exec(self, t: int, pid: int, ppid: int, pgid: int, sid: int | None,
             uid: int | None, cmdline: str, argv: list[str] | None, filename: str | None,
             interpreter: list[str] | None, truncated: bool, fds: list[FdInfo] | None,
             env: dict[str, str] | None) -> M:
        owner = self.get(pid, t, ppid)
        owner.execed(t, cmdline, argv, filename, interpreter, truncated, fds, env, uid, pgid,
                     sid)
        return owner

    def exec_failed(self, t: int, pid: int, filename: str, errno: int,
                    truncated: bool) -> M:
        owner = self.get(pid, t, None)
        owner.exec_failed(t, pid, filename, errno, truncated)
        return owner

    def exit(self, t: int, pid: int, ppid: int, pgid: int, exit_code: int | None,
             signal: int | None, core_dumped: bool) -> M:
        owner = self.get(pid, t, ppid)
        owner.ended(t, pid, ppid, pgid, exit_code, signal, core_dumped)
        return owner

    def setpgid(self, t: int, target_pid: int, pgid: int) -> M:
        owner = self.get(target_pid, t, None)
        owner.set_pgid(t, pgid)
        return owner

    def setsid(self, t: int, pid: int, ppid: int, pgid: int, sid: int | None) -> M:
        owner = self.get(pid, t, ppid)
        owner.set_pgid(t, pgid)
        owner.set_sid(t, sid)
        return owner

    def fd_snapshot(self, ev: FdSnapshot) -> M | None:
        """Kept by the live process with its pid, if any (never makes one)."""
        owner = self.live.get(ev.pid)
        if owner is not None:
            owner.set_fd_snapshot(ev)
        return owner

    def state(self, pid: int) -> M | None:
        """ProcState, Signal: belong to the live process with `pid` (hang.py), change
        nothing."""
        return self.live.get(pid)

    def add(self, ev: Event) -> M | None:
        """Apply one event; the process it belongs to (None: none)."""
        t = ev.timestamp
        if isinstance(ev, Fork):
            return self.fork(t, ev.parent_pid, ev.child_pid, ev.parent_pgid, ev.child_pgid,
                             ev.sid)
        if isinstance(ev, Exec):
            return self.exec(t, ev.pid, ev.ppid, ev.pgid, ev.sid, ev.uid, ev.cmdline, ev.argv,
                             ev.filename, ev.interpreter, ev.truncated, ev.fds, ev.env)
        if isinstance(ev, ExecFailed):
            return self.exec_failed(t, ev.pid, ev.filename, ev.errno, ev.truncated)
        if isinstance(ev, Exit):
            return self.exit(t, ev.pid, ev.ppid, ev.pgid, ev.exit_code, ev.signal,
                             ev.core_dumped)
        if isinstance(ev, SetPGID):
            return self.setpgid(t, ev.target_pid, ev.pgid)
        if isinstance(ev, SetSID):
            return self.setsid(t, ev.pid, ev.ppid, ev.pgid, ev.sid)
        if isinstance(ev, FdSnapshot):
            return self.fd_snapshot(ev)
        if isinstance(ev, (ProcState, Signal)):
            return self.state(ev.pid)
        return None

    def add_body(self, t: int, tag: str, body: dict[str, Any]) -> M | None:
        """`add` for a body the reader passed on, without making the event: a plain dict
        holds plain values, every field the writer always writes included
        (proctrace_bcc.schema.checked).  Slow for an Irregular body (b64 strings, fds,
        env: they need decoding) and for the kinds it leaves to `add`; it raises before
        any change, so that a body is applied once.  The rules of `exec`, `exit`, ...
        with `get` inlined (tests/unit/test_stream.py checks both give the same tree and
        owners); a node reads what it keeps of an Exec or Exit body itself, and light
        nodes (`heavy` False) are given no failed exec and no group (the hot path of
        sequential and by-process)."""
        if type(body) is not dict:
            raise Slow
        if tag == "Fork":
            return self.fork(t, body["parent_pid"], body["child_pid"], body["parent_pgid"],
                             body["child_pgid"], body["sid"])
        owner = _OWNER.get(tag)
        if owner is None:
            raise Slow
        pid = body[owner[0]]
        ppid = body["ppid"] if owner[1] else None
        p = self.live.get(pid)
        if p is None or p.exit is not None:
            p = self._new(pid, t, ppid)
        elif p.ppid is None and ppid:
            p.ppid = ppid
        if tag == "Exec":
            p.exec_body(t, body)
        elif tag == "Exit":
            p.exit_body(t, body)
        elif not self.heavy:
            pass
        elif tag == "ExecFailed":
            p.exec_failed(t, pid, body["filename"], body["errno"], body.get("truncated", False))
        else:  # SetPGID, SetSID
            p.set_pgid(t, body["pgid"])
            if tag == "SetSID":
                p.set_sid(t, body["sid"])
        return p


# Whose event add_body applies, as `add` does: the field naming its process (SetPGID:
# the target's), and whether the event's "ppid" is that process's parent.
_OWNER: dict[str, tuple[str, bool]] = {
    "Exec": ("pid", True), "ExecFailed": ("pid", False), "Exit": ("pid", True),
    "SetPGID": ("target_pid", False), "SetSID": ("pid", True),
}


# ---------------------------------------------------------------------------
# The recorder's membership: live pids of the tree, events in timestamp order.  A fork
# a backend delivers late (after events it precedes) is placed when it comes: the exit
# of a pid not in the tree and a fork whose parent is not in it are remembered a while.

Unplaced = dict[int, list[tuple[int, int]]]  # parent pid -> [(child pid, fork time)]


def join(alive: set[int], exits: dict[int, int], forks: Unplaced, pid: int,
         forked: int) -> int:
    """`pid`, forked at `forked`, is in the tree, and so are the remembered forks it made
    before its exit (recursively); a remembered exit stamped at or after its fork means
    it is already gone.  Returns how many remembered forks were placed (and forgotten)."""
    placed = 0
    stack = [(pid, forked)]
    while stack:
        pid, forked = stack.pop()
        exited = exits.get(pid)
        if exited is not None and exited >= forked:
            del exits[pid]  # its exit came first: already gone
        else:
            alive.add(pid)
            exited = None
        kids = forks.get(pid)
        if not kids:
            continue
        # Its children are the forks between its own fork and its exit (the pid may
        # have been reused since: later forks are another process's).
        mine: list[tuple[int, int]] = []
        rest: list[tuple[int, int]] = []
        for k in kids:
            (mine if forked <= k[1] and (exited is None or k[1] <= exited) else rest).append(k)
        if mine:
            if rest:
                forks[pid] = rest
            else:
                del forks[pid]
            placed += len(mine)
            stack.extend(mine)
    return placed


def forget_older(times: dict[int, int], limit: int, most: int) -> None:
    """Forget the pids of `times` (pid -> time, in age order: a pid is re-inserted last
    when its time changes) older than `limit`, or the oldest beyond `most`."""
    while times:
        pid = next(iter(times))  # the oldest
        if len(times) <= most and times[pid] >= limit:
            break
        del times[pid]


def prune(exits: dict[int, int], forks: Unplaced, nforks: int, limit: int, most: int) -> int:
    """Forget remembered exits and forks older than `limit`, or the oldest beyond `most`
    of each; returns how many forks are left (`nforks` before)."""
    forget_older(exits, limit, most)  # an exit is re-inserted on every exit
    while forks:
        parent = next(iter(forks))  # (about) the oldest: dict order is first insertion
        kids = forks[parent]
        over = nforks - most
        if over <= 0 and kids[0][1] >= limit:
            break
        del forks[parent]
        keep = [k for k in kids if k[1] >= limit]
        keep = keep[max(0, over - (len(kids) - len(keep))):]
        nforks -= len(kids) - len(keep)
        if keep:
            forks[parent] = keep  # inserted again, last
    return nforks
