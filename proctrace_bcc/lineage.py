"""Which processes form the analysed subtree: the rules every builder shares.

The tree builders (:mod:`proctrace_bcc.tree`: a :class:`~proctrace_bcc.tree.Process` per
process) and :mod:`proctrace_bcc.membership` (a few bytes per process) both key a
process by (pid, start): a pid seen again after its exit, or forked again, is a new
process.  Both place each new process in the subtree with :class:`Subtree`, and select
the root and the events of the subtree with the functions below, so that what "a
process of the tree" means is decided here, for every mode.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from proctrace_bcc.events import Header

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


def prune(exits: dict[int, int], forks: Unplaced, nforks: int, limit: int, most: int) -> int:
    """Forget remembered exits and forks older than `limit`, or the oldest beyond `most`
    of each; returns how many forks are left (`nforks` before)."""
    while exits:
        pid = next(iter(exits))  # the oldest: re-inserted on every exit
        if len(exits) <= most and exits[pid] >= limit:
            break
        del exits[pid]
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
