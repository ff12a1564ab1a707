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
