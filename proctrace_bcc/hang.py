"""Who waits on what at a hang snapshot: a pure function of the tree and its ProcState events.

`record` writes a hang snapshot when --timeout fires, on SIGINT/SIGTERM to the
recorder, and on SIGUSR1: one ProcState event per live process of the tree (its
state letter, /proc/PID/wchan, the function names of /proc/PID/stack and, with
--fds, its descriptor table; docs/format.md).  :func:`analyze_hang` reads the last
snapshot and tells, for each process, what it is blocked in and on whom:

- blocked reading a pipe (``pipe_read``, ``anon_pipe_read`` in its wchan or stack): the
  pipes whose read end it holds, and for each the processes of the snapshot still
  holding the write end (its writers: the ones it waits for);
- blocked writing a pipe (``pipe_write``): the processes holding the read end;
- waiting for a child (``do_wait``, ``kernel_wait4``): its children alive in the snapshot;
- anything else (``futex_wait_queue``, ``do_select``, ``hrtimer_nanosleep``, running):
  just what it is in.

:attr:`HangReport.chains` orders them as a person follows the hang: from the top
process of the snapshot down through whom each waits for, each process once.  The
sentences (:func:`hang_sentences`) are segments with process references
(:class:`proctrace_bcc.fds.Ref`), worded by the renderers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from proctrace_bcc.events import ProcState
from proctrace_bcc.fds import (
    READ,
    READ_WRITE,
    WRITE,
    Line,
    Ref,
    access,
    joined,
    merged,
    rel_time,
)
from proctrace_bcc.tree import Process, ProcessTree

SNAPSHOT_SPAN_NS = 1_000_000_000  # ProcStates of one trigger this close belong together
DEPTH_MAX = 8  # a waiting chain is followed this deep

PIPE_READ, PIPE_WRITE, CHILD, OTHER = "pipe-read", "pipe-write", "child", "other"
# Kernel functions by what a process blocked in them waits for (6.18 reads pipes in
# anon_pipe_read; older kernels in pipe_read, pipe_wait).
_PIPE_READ = frozenset(("pipe_read", "anon_pipe_read", "pipe_wait", "pipe_wait_readable"))
_PIPE_WRITE = frozenset(("pipe_write", "anon_pipe_write", "pipe_wait_writable"))
_WAIT = frozenset(("do_wait", "kernel_wait4", "__do_sys_wait4", "kernel_waitid",
                   "do_sys_waitid"))
STATE_WORDS = {"R": "running", "S": "sleeping", "D": "in uninterruptible sleep",
               "T": "stopped", "t": "stopped by a debugger", "Z": "a zombie", "X": "dead",
               "I": "idle"}


@dataclass(eq=False, slots=True)
class Blocked:
    """One process of the snapshot: what it is in, and whom it waits for."""

    process: Process
    state: ProcState
    kind: str  # PIPE_READ, PIPE_WRITE, CHILD or OTHER
    where: str  # the kernel function it is in: its wchan, else the top of its stack
    pipes: list[tuple[str, list[int], list[Process]]] = field(default_factory=list)
    # PIPE_READ/PIPE_WRITE: (pipe:[INO], its fds on it, the other end's holders)
    children: list[Process] = field(default_factory=list)  # CHILD: alive children

    @property
    def waits_for(self) -> list[Process]:
        if self.kind == CHILD:
            return self.children
        return [q for _, _, holders in self.pipes for q in holders]


@dataclass(slots=True)
class HangReport:
    trigger: str
    time: int
    processes: list[Blocked]
    chains: list[tuple[int, Blocked]]  # (depth, entry) from the top down, each once


def states(events: Iterable[object]) -> list[ProcState]:
    """The ProcState events among `events`, in their order."""
    return [e for e in events if isinstance(e, ProcState)]


def last_snapshot(sts: Sequence[ProcState]) -> list[ProcState]:
    """The ProcStates of the last snapshot (the last trigger's, taken together)."""
    if not sts:
        return []
    last = sts[-1]
    return [s for s in sts if s.trigger == last.trigger
            and last.timestamp - SNAPSHOT_SPAN_NS <= s.timestamp <= last.timestamp]


def _in(st: ProcState, names: frozenset[str]) -> bool:
    """Whether its wchan or a function of its stack is one of `names`."""
    return st.wchan in names or any(f in names for f in st.stack or [])


def _process(tree: ProcessTree, st: ProcState) -> Process | None:
    for p in reversed(tree.find(st.pid)):
        if p.start <= st.timestamp and (p.exit_time is None or p.exit_time >= st.timestamp):
            return p
    return None


def _pipes(st: ProcState, modes: tuple[str, ...]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for f in st.fds or []:
        if f.kind == "pipe" and access(f) in modes:
            out.setdefault(f.ino, []).append(f.fd)
    return out


def analyze_hang(tree: ProcessTree, events: Iterable[object]) -> HangReport | None:
    """The last hang snapshot among `events`, explained; None when there is none."""
    snap = last_snapshot(states(events))
    if not snap:
        return None
    procs: list[tuple[Process, ProcState]] = []
    for st in snap:
        p = _process(tree, st)
        if p is not None:
            procs.append((p, st))
    alive = {id(p) for p, _ in procs}
    entries: list[Blocked] = []
    for p, st in procs:
        where = st.wchan or (st.stack[0] if st.stack else "") or STATE_WORDS.get(st.state, "")
        mine: tuple[str, ...] = ()
        theirs: tuple[str, ...] = ()
        if _in(st, _PIPE_READ):
            mine, theirs = (READ, READ_WRITE), (WRITE, READ_WRITE)
            kind = PIPE_READ
        elif _in(st, _PIPE_WRITE):
            mine, theirs = (WRITE, READ_WRITE), (READ, READ_WRITE)
            kind = PIPE_WRITE
        elif _in(st, _WAIT):
            kind = CHILD
        else:
            kind = OTHER
        b = Blocked(p, st, kind, where)
        for ino, fds in sorted(_pipes(st, mine).items()):
            others = [q for q, qs in procs if q is not p and ino in _pipes(qs, theirs)]
            b.pipes.append((f"pipe:[{ino}]", sorted(fds), others))
        if kind == CHILD:
            b.children = [c for c in p.children if id(c) in alive]
        entries.append(b)
    by_proc = {id(b.process): b for b in entries}
    chains: list[tuple[int, Blocked]] = []
    done: set[int] = set()

    def follow(b: Blocked, depth: int) -> None:
        if id(b.process) in done:
            return
        done.add(id(b.process))
        chains.append((depth, b))
        if depth < DEPTH_MAX:
            for q in b.waits_for:
                nxt = by_proc.get(id(q))
                if nxt is not None:
                    follow(nxt, depth + 1)

    tops = [b for b in entries if b.process.parent is None or id(b.process.parent) not in alive]
    for b in [*tops, *entries]:
        follow(b, 0)
    return HangReport(snap[-1].trigger, snap[0].timestamp, entries, chains)


# ---------------------------------------------------------------------------
# In words

TRIGGER_WORDS = {"timeout": "when --timeout fired", "interrupt": "on SIGINT to the recorder",
                 "terminate": "on SIGTERM/SIGHUP to the recorder",
                 "request": "on request (SIGUSR1)"}


def _and_refs(procs: Sequence[Process]) -> Line:
    return joined([[Ref(q)] for q in procs])


def _what(b: Blocked) -> str:
    if b.where:
        return f" is blocked in {b.where}" if b.state.state in "SD" else \
            f" is {STATE_WORDS.get(b.state.state, b.state.state)} (in {b.where})"
    return f" is {STATE_WORDS.get(b.state.state, b.state.state)}"


def entry_sentence(b: Blocked, nxt: Sequence[Blocked] = ()) -> Line:
    """``bats (pid 41) is blocked in `pipe_read` on pipe:[7]; its only writer still open is
    python3 (pid 57).``  With `nxt` (the entries of whom it waits for), a wait for one
    child that is itself blocked elsewhere says where: ``make (pid 10) is blocked in
    `do_wait` for cc1 (pid 12), which is in `futex_wait_queue`.``"""
    line: Line = [Ref(b.process), _what(b)]
    if b.kind in (PIPE_READ, PIPE_WRITE) and b.pipes:
        other = "writer" if b.kind == PIPE_READ else "reader"
        end = "write" if b.kind == PIPE_READ else "read"
        for i, (name, _fds, holders) in enumerate(b.pipes):
            line.append(";" if i else "")
            if not holders:
                line.append(f" on {name}; no other process of the tree holds its {end} end")
            elif len(holders) == 1:
                line.extend([f" on {name}; its only {other} still open is ", Ref(holders[0])])
            else:
                line.extend([f" on {name}; its {other}s still open are ", *_and_refs(holders)])
    elif b.kind == CHILD:
        if b.children:
            line.extend([" for ", *_and_refs(b.children)])
            if len(nxt) == 1 and nxt[0].kind == OTHER and nxt[0].where:
                line.append(f", which is in {nxt[0].where}")
        else:
            line.append(" for a child outside the snapshot")
    line.append(".")
    return merged(line)


def heading(rep: HangReport, t0: int) -> str:
    return (f"Hang snapshot {TRIGGER_WORDS.get(rep.trigger, rep.trigger)} at "
            f"{rel_time(rep.time, t0)}: {len(rep.processes)} live "
            f"process{'es' if len(rep.processes) != 1 else ''}.")


def hang_sentences(rep: HangReport, limit: int | None = None) -> list[tuple[int, Line]]:
    """(depth, sentence) per process of the waiting chains, at most `limit` of them."""
    by_proc = {id(b.process): b for b in rep.processes}
    out: list[tuple[int, Line]] = []
    for depth, b in rep.chains:
        if limit is not None and len(out) >= limit:
            break
        nxt = [by_proc[id(q)] for q in b.waits_for if id(q) in by_proc]
        out.append((depth, entry_sentence(b, nxt)))
    return out


__all__ = [
    "CHILD",
    "OTHER",
    "PIPE_READ",
    "PIPE_WRITE",
    "Blocked",
    "HangReport",
    "analyze_hang",
    "entry_sentence",
    "hang_sentences",
    "heading",
    "last_snapshot",
    "states",
]
