"""Descriptor analysis: who opened each pipe and socket, who held it, who leaked it.

A pure function of the tree (:func:`analyze_fds`).  Its input is what `record --fds`
stores: the descriptors each process holds right after every exec
(``ExecSpan.fds``; close-on-exec ones are already gone) and, for processes still
alive when the recording stopped, their descriptors read from /proc at the end
(``Process.fd_snapshot``).  Between those instants nothing is recorded, so every
conclusion below is drawn from these observations plus the fork tree.

Pipes and sockets are identified by (kind, dev, ino): both ends of one pipe share
them; each socket is its own object (the two ends of a connection are two inodes).

Who opened a pipe or socket (``Channel.opener``), in this order:

1. Let H be every process seen holding it and A the nearest common ancestor of H in
   the fork tree.  An anonymous pipe or socket reaches another process only by fork
   inheritance, so whoever created it is A or an ancestor of A (descriptor passing
   over unix sockets and pidfd_getfd are the exceptions, and are not seen).
2. A was never seen holding it: A opened it ("ancestor" rule).  A created it and
   never exec'd while holding it (a shell setting up a pipeline, a subshell), which
   is why no exec of A lists it.
3. A was seen holding it, but only from its first exec on: A got it from its parent
   at fork, so A's parent opened it ("parent" rule; the recorder's own child, the
   top of the tree, got it from outside the recording: "outside" rule).
4. A was seen holding it only after an exec or snapshot that did not list it: A
   opened it itself, between those two observations ("seen" rule).
5. The holders share no ancestor (named FIFOs, a subtree cut by -p): the first
   process seen holding it ("first-seen" rule).

Leaked descriptors (``FdReport.leaks``): a process that holds a pipe or socket at a
descriptor number other than 0-2 right after one of its execs (it kept it across
exec), whose opener is a proper ancestor of it (it inherited it; for "outside" pipes,
the top of the tree counts as the ancestor), and that either was still alive at the
end of the recording, still holding it, or exited after that ancestor had exited.
When no exec of the process has a descriptor table (a backend that only takes the
end snapshot), a process that exec'd and holds it in its end snapshot counts as
having kept it across exec: it can only have got it from its ancestor, before.
Regular files, ttys and devices are never reported as leaks: nobody waits for them
to be closed.  The chain is the fork path from the ancestor down to the process:
the descriptor passed through each of those processes.  For a pipe, the processes
still alive at the end that hold its read end are the ones waiting for the leaker
to close the write end.

Findings in words (:func:`leak_sentences`, :func:`opener_sentence`): each sentence is a
list of segments, plain text and :class:`Ref` (a process it names, with the fds to name
with it).  Renderers word a Ref their way from the process it points to (the terminal:
``sleep 300 (pid 42, fd 3)``; the HTML report: the same words, a link to that process's
row), so no renderer reads another's English to find who is meant.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from proctrace_bcc.attribution import Test, attribute
from proctrace_bcc.events import FdInfo
from proctrace_bcc.render import fmt_duration
from proctrace_bcc.tree import Process, ProcessTree

CHANNEL_KINDS = ("pipe", "socket")

O_ACCMODE = 3
READ, WRITE, READ_WRITE = "read", "write", "read-write"
_ACCESS = {0: READ, 1: WRITE, 2: READ_WRITE}

Key = tuple[str, int, int]  # (kind, dev, ino)


def access(fd: FdInfo) -> str | None:
    """'read', 'write' or 'read-write' from the open flags; None when not recorded."""
    if fd.flags is None:
        return None
    return _ACCESS.get(fd.flags & O_ACCMODE)


@dataclass(slots=True)
class Observation:
    """The descriptors of a process at one instant: right after an exec, or at the end."""

    time: int
    source: str  # "exec" or "end"
    fds: list[FdInfo]
    index: int  # position among the process's observations (0: the first)


@dataclass(slots=True)
class Sighting:
    """One observation of a process holding a given pipe or socket."""

    time: int
    source: str  # "exec" or "end"
    fds: list[FdInfo]  # the descriptors of the process that point to the object
    index: int


class Since(IntEnum):
    """How a holding began (the values are the HTML report's codes)."""

    FORK = 0  # it came with the fork: listed from the process's first exec on
    EXEC = 1  # first listed by an exec
    END = 2  # first listed by the end snapshot


class Until(IntEnum):
    """How a holding ended, as far as the observations tell (HTML report codes)."""

    EXIT = 0  # held until the process exited
    CLOSED = 1  # a later observation no longer listed it
    OPEN = 2  # alive at the end and still holding it, per the /proc snapshot
    ALIVE = 3  # alive at the end without a snapshot: holding it as far as seen
    UNKNOWN = 4  # neither: the process's end was not recorded

    @property
    def at_end(self) -> bool:
        """Still held when the recording ended (Holding.holds_at_end)."""
        return self in (Until.OPEN, Until.ALIVE)


@dataclass(eq=False, slots=True)
class Holding:
    """One process's hold on a pipe or socket, as far as the observations tell."""

    process: Process
    sightings: list[Sighting]
    since: int  # fork time when it came with the fork, else the first sighting
    since_fork: bool
    closed_before: int | None = None  # a later observation did not list it
    holds_at_end: bool = False  # alive at the end and (as far as seen) still holding it
    snapshot_at_end: bool = False  # holds_at_end comes from the /proc snapshot

    @property
    def fds(self) -> list[int]:
        return sorted({f.fd for s in self.sightings for f in s.fds})

    @property
    def last_fds(self) -> list[FdInfo]:
        return self.sightings[-1].fds

    def fds_at_end(self) -> list[FdInfo]:
        return self.last_fds if self.holds_at_end else []

    @property
    def ends(self) -> list[str]:
        """The ends (read/write/read-write) it held, in that order, across all sightings."""
        seen = {access(f) for s in self.sightings for f in s.fds}
        return [e for e in (READ, WRITE, READ_WRITE) if e in seen]

    @property
    def until(self) -> int | None:
        """When it stopped holding it: closed, or exited; None: still holding at the end."""
        if self.closed_before is not None:
            return self.closed_before
        return self.process.exit_time

    @property
    def since_kind(self) -> Since:
        if self.since_fork:
            return Since.FORK
        return Since.END if self.sightings[0].source == "end" else Since.EXEC

    @property
    def until_kind(self) -> Until:
        if self.closed_before is not None:
            return Until.CLOSED
        if self.holds_at_end:
            return Until.OPEN if self.snapshot_at_end else Until.ALIVE
        return Until.EXIT if self.process.exit is not None else Until.UNKNOWN


@dataclass(eq=False, slots=True)
class Channel:
    """A pipe or socket seen in the recording."""

    kind: str
    dev: int
    ino: int
    holders: list[Holding]  # in order of `since`
    opener: Process | None
    rule: str  # "seen", "ancestor", "parent", "outside", "first-seen"
    entered_by: Process | None = None  # "outside": the top process that brought it in
    first_seen: int = 0

    @property
    def key(self) -> Key:
        return (self.kind, self.dev, self.ino)

    @property
    def name(self) -> str:
        """As /proc/PID/fd shows it: pipe:[INO], socket:[INO]."""
        return f"{self.kind}:[{self.ino}]"

    @property
    def open_at_end(self) -> list[Holding]:
        return [h for h in self.holders if h.holds_at_end]

    def holding(self, p: Process) -> Holding | None:
        for h in self.holders:
            if h.process is p:
                return h
        return None

    def source(self) -> Process | None:
        """The process a descendant inherits it from at the top of its chain."""
        return self.opener if self.rule != "outside" else self.entered_by


@dataclass(eq=False, slots=True)
class Waiter:
    """A process holding the read end of a pipe whose write end leaked, while it leaked.

    `holding` is None for a reader inferred, not seen: a process that never exec'd
    (so no descriptor table of it was recorded) forked by the pipe's opener, alive
    while the leaker held the pipe; or the opener itself (see the module doc).
    """

    process: Process
    fds: list[int]
    holding: Holding | None = None
    # Pipes this reader writes to and the alive readers of each (who wait in turn).
    downstream: list[tuple[Channel, list[Waiter]]] = field(default_factory=list)

    @property
    def seen(self) -> bool:
        return self.holding is not None

    @property
    def until(self) -> int | None:
        """When it stopped reading (closed it or exited); None: still at the end."""
        if self.holding is not None:
            return self.holding.until
        return self.process.exit_time


@dataclass(eq=False, slots=True)
class Leak:
    """A process that kept an inherited pipe or socket open (see the module doc)."""

    holding: Holding
    channel: Channel
    fds: list[int]  # its descriptor numbers >= 3 pointing to the object, after exec
    ends: list[str]
    source: Process  # the ancestor it came from (the opener, or the top of the tree)
    chain: list[tuple[Process, list[int]]]  # processes between source and the leaker
    alive: bool  # still alive (and holding it) at the end of the recording
    waiting: list[Waiter]  # pipes: processes holding the read end while it leaked
    others: list[Holding]  # other processes still holding the same end(s) at the end
    giver: Process | None = None  # the process it inherited it from (its parent)
    held_after: int | None = None  # ns it held it after `giver` exited
    let_go: int = 0  # when it stopped holding it (exit, close, or the recording's end)
    reader_outside: bool = False  # the read end is outside the recording (its caller)
    stopped_at: int | None = None  # the recording has no End: its last event's time
    test: Test | None = None  # the test its process is attributed to (attribution)

    @property
    def process(self) -> Process:
        return self.holding.process

    def path(self) -> list[Ref]:
        """The fork path from `source` down to the leaker, each with the fds it was seen using."""
        src = self.channel.holding(self.source)
        return [Ref(self.source, tuple(src.fds) if src is not None else ()),
                *(Ref(q, tuple(fds)) for q, fds in self.chain), Ref(self.process, tuple(self.fds))]

    def waiters(self) -> Iterator[tuple[Channel, Waiter]]:
        """Every waiter with the pipe it waits on: `waiting`, then who waits in turn."""
        return _walk(self.channel, self.waiting)


def _walk(ch: Channel, ws: Iterable[Waiter]) -> Iterator[tuple[Channel, Waiter]]:
    for w in ws:
        yield ch, w
        for down, readers in w.downstream:
            yield from _walk(down, readers)


@dataclass(slots=True)
class FdReport:
    channels: list[Channel]
    leaks: list[Leak]
    has_data: bool  # at least one observation in the tree
    processes_observed: int = 0
    end: int = 0
    threshold: int = 0  # ns: "long after" (see LONG_MIN_NS, LONG_FRACTION)


# ---------------------------------------------------------------------------


def observations(p: Process) -> list[Observation]:
    """Every descriptor table recorded for `p`, in time order."""
    obs: list[Observation] = []
    for ex in p.execs:
        if ex.fds is not None:
            obs.append(Observation(ex.timestamp, "exec", ex.fds, len(obs)))
    if p.fd_snapshot is not None:
        obs.append(Observation(p.fd_snapshot.timestamp, "end", p.fd_snapshot.fds, len(obs)))
    return obs


def ancestors(p: Process) -> list[Process]:
    """The fork path from the top of the tree down to `p` (inclusive)."""
    path: list[Process] = []
    q: Process | None = p
    while q is not None:
        path.append(q)
        q = q.parent
    path.reverse()
    return path


def common_ancestor(procs: Iterable[Process]) -> Process | None:
    """The nearest common ancestor (a process is its own ancestor); None if none."""
    prefix: list[Process] | None = None
    for p in procs:
        path = ancestors(p)
        if prefix is None:
            prefix = path
            continue
        n = 0
        for a, b in zip(prefix, path, strict=False):
            if a is not b:
                break
            n += 1
        prefix = prefix[:n]
        if not prefix:
            return None
    return prefix[-1] if prefix else None


def is_ancestor(a: Process, p: Process) -> bool:
    """True when `a` is a proper ancestor of `p`."""
    q = p.parent
    while q is not None:
        if q is a:
            return True
        q = q.parent
    return False


def _holding(p: Process, obs: list[Observation], sightings: list[Sighting]) -> Holding:
    first, last = sightings[0], sightings[-1]
    if first.index == 0 and first.source == "exec" and p.fork_time is not None:
        since, since_fork = p.start, True
    else:
        since, since_fork = first.time, False
    h = Holding(p, sightings, since, since_fork)
    later = obs[last.index + 1:]
    if later:
        h.closed_before = later[0].time
    elif p.exit is None:
        h.holds_at_end = True
        h.snapshot_at_end = last.source == "end"
    return h


def _opener(holders: list[Holding], by_process: dict[int, Holding]
            ) -> tuple[Process | None, str, Process | None]:
    """(opener, rule, entered_by) following the rules of the module doc."""
    procs = [h.process for h in holders]
    a = common_ancestor(procs)
    if a is None:
        first = min(holders, key=lambda h: (h.sightings[0].time, h.process.start))
        return first.process, "first-seen", None
    ha = by_process.get(id(a))
    if ha is None:
        return a, "ancestor", None
    seen = ha.sightings[0]
    if seen.index > 0 or seen.source != "exec":
        # Absent from an earlier observation, or a process that never exec'd (only
        # its /proc snapshot lists it): the nearest candidate is a itself.
        return a, "seen", None
    # Listed from a's very first exec on: a had it when it first exec'd.
    if a.parent is not None:
        return a.parent, "parent", None
    return None, "outside", a


def _fd_number(f: FdInfo) -> int:
    return f.fd


def _sort_key(h: Holding) -> tuple[int, int, int]:
    return (h.since, h.process.start, h.process.pid)


def channels(tree: ProcessTree) -> tuple[list[Channel], int, bool]:
    """Every pipe and socket of the tree, in order of first sighting."""
    per: dict[Key, dict[int, tuple[Process, list[Observation], list[Sighting]]]] = {}
    observed = 0
    any_data = False
    for p in tree.processes:
        obs = observations(p)
        if not obs:
            continue
        any_data = True
        observed += 1
        for o in obs:
            by_key: dict[Key, list[FdInfo]] = {}
            for f in o.fds:
                if f.kind in CHANNEL_KINDS:
                    by_key.setdefault((f.kind, f.dev, f.ino), []).append(f)
            for key, fds in by_key.items():
                if len(fds) > 1:
                    fds.sort(key=_fd_number)
                entry = per.setdefault(key, {}).setdefault(id(p), (p, obs, []))
                entry[2].append(Sighting(o.time, o.source, fds, o.index))
    out: list[Channel] = []
    for (kind, dev, ino), by_proc in per.items():
        holders = sorted((_holding(p, obs, s) for p, obs, s in by_proc.values()), key=_sort_key)
        opener, rule, entered = _opener(holders, {id(h.process): h for h in holders})
        first_seen = min(h.sightings[0].time for h in holders)
        out.append(Channel(kind, dev, ino, holders, opener, rule, entered, first_seen))
    out.sort(key=lambda c: (c.first_seen, c.kind, c.ino))
    return out, observed, any_data


def _chain(source: Process, p: Process, ch: Channel) -> list[tuple[Process, list[int]]]:
    path = ancestors(p)
    i = next(i for i, q in enumerate(path) if q is source)
    out: list[tuple[Process, list[int]]] = []
    for q in path[i + 1:-1]:
        h = ch.holding(q)
        out.append((q, h.fds if h is not None else []))
    return out


LONG_MIN_NS = 1_000_000_000  # "long after": at least 1 s ...
LONG_FRACTION = 0.05  # ... and at least 5% of the recording's duration


def long_after(tree: ProcessTree) -> int:
    """How long a holder must keep a pipe after its giver exited to be a leak (ns)."""
    return max(LONG_MIN_NS, int((tree.end - tree.start) * LONG_FRACTION))


def _held_from(h: Holding) -> int:
    """Since when it held it, as far as one can tell: a process that never exec'd and
    is seen only in its end snapshot had it from its fork (or opened it itself)."""
    if h.sightings[0].source == "end" and not h.process.execs:
        return h.process.start
    return h.since


def _present(start: int, until: int | None, t: int) -> bool:
    return start <= t and (until is None or until >= t)


def _reads(fds: Iterable[FdInfo]) -> list[int]:
    return sorted({f.fd for f in fds if access(f) in (READ, READ_WRITE)})


def _mine(p: Process, q: Process) -> bool:
    """q is p or a descendant of p (its holders are part of the same leak)."""
    return q is p or is_ancestor(p, q)


def _waiters(ch: Channel, leaker: Process, t: int, by_writer: dict[int, list[Channel]],
             seen: set[int], depth: int = 0) -> list[Waiter]:
    """Holders of the read end of `ch` at time t, other than `leaker` and its descendants,
    each with the pipes it writes to at the end and who reads those in turn."""
    out: list[Waiter] = []
    for h in ch.holders:
        fds = _reads(h.last_fds)
        if not fds or _mine(leaker, h.process) or not _present(_held_from(h), h.until, t):
            continue
        w = Waiter(h.process, fds, h)
        if h.holds_at_end and depth < 4 and id(h.process) not in seen:
            seen.add(id(h.process))
            for down in by_writer.get(id(h.process), []):
                if down is ch:
                    continue
                ws = [r for r in _waiters(down, h.process, t, by_writer, seen, depth + 1)
                      if r.holding is not None and r.holding.holds_at_end]
                if ws:
                    w.downstream.append((down, ws))
        out.append(w)
    return out


def _unseen_readers(ch: Channel, leaker: Process, t: int) -> list[Waiter]:
    """Readers inferred when no holder of the read end is seen at time t: the processes
    forked by the pipe's opener (or below it) that never exec'd and have no end snapshot,
    so that no descriptor table of theirs exists, alive at t, not on the leaker's fork
    path; failing those, the opener itself when it was never seen with the pipe and was
    alive at t (a shell reading `$(...)`)."""
    src = ch.opener
    if src is None or ch.rule == "outside":
        return []
    path = set(map(id, ancestors(leaker)))
    made = min(h.since for h in ch.holders)
    forks = [Waiter(q, []) for q in src.walk()
             if q is not src and not q.execs and q.fd_snapshot is None
             and id(q) not in path and not _mine(leaker, q)
             and q.start >= made and _present(q.start, q.exit_time, t)]
    if forks:
        return forks
    if ch.holding(src) is None and id(src) not in path and _present(src.start, src.exit_time, t):
        return [Waiter(src, [])]
    return []


def _leaks(chans: Sequence[Channel], tree: ProcessTree) -> list[Leak]:
    # Pipes each alive process still writes to (for the "waits in turn" chains).
    by_writer: dict[int, list[Channel]] = {}
    for ch in chans:
        if ch.kind != "pipe":
            continue
        for h in ch.open_at_end:
            if any(access(f) == WRITE for f in h.fds_at_end()):
                by_writer.setdefault(id(h.process), []).append(ch)
    long = long_after(tree)
    stopped = tree.end_event is None  # the recorder was killed: the file just stops
    leaks: list[Leak] = []
    for ch in chans:
        source = ch.source()
        if source is None:
            continue
        for h in ch.holders:
            p = h.process
            if p is source or not is_ancestor(source, p):
                continue
            kept = [f for s in h.sightings if s.source == "exec" for f in s.fds]
            if not kept and h.snapshot_at_end and p.execs and all(
                    ex.fds is None for ex in p.execs):
                # No descriptor table at its execs (a backend that only snapshots at the
                # end): it got it from an ancestor, so it had it before its exec.
                kept = list(h.last_fds)
            if not kept:
                continue
            final = h.fds_at_end() if h.holds_at_end else h.last_fds
            ends = [e for e in (READ, WRITE, READ_WRITE) if e in {access(f) for f in final}]
            high = any(f.fd > 2 for f in kept)
            # Rule 1: fd 3 and up, alive at the end or outliving the source.
            outlived = (h.closed_before is None and p.exit is not None
                        and source.exit is not None and source.exit.timestamp < p.exit.timestamp)
            first = high and (h.holds_at_end or outlived)
            # Rule 2: any fd, held long after the process it came from exited.
            giver = p.parent
            let_go = h.until if h.until is not None else tree.end
            held_after: int | None = None
            if giver is not None and giver.exit_time is not None and giver.exit_time <= let_go:
                held_after = let_go - giver.exit_time
            # A recording that just stops (no End) has no later instant to measure with:
            # a holder alive at its last event counts from its giver's exit on.
            need = 0 if stopped and h.holds_at_end else long
            long_held = held_after is not None and (need == 0 or held_after > need)
            if not (first or long_held):
                continue
            # Who waits: at the instant it became a leak (the giver's exit + need), or,
            # in a recording that just stops, at its last event (a reader may have come
            # after the giver exited; one that has gone by then waits no more).
            t = let_go if held_after is None or need == 0 else min(
                let_go, let_go - held_after + need)
            write = ch.kind == "pipe" and (WRITE in ends or READ_WRITE in ends)
            waiting: list[Waiter] = []
            if write:
                waiting = _waiters(ch, p, t, by_writer, {id(p)})
                if not waiting:
                    waiting = _unseen_readers(ch, p, t)
            outside = write and not waiting and ch.rule == "outside"
            second = long_held and (
                (write and (bool(waiting) or outside)) or (ch.kind == "socket" and high))
            if not (first or second):
                continue
            fds = sorted({f.fd for f in final}) or sorted({f.fd for f in kept})
            my_ends = set(ends)
            others = [o for o in ch.open_at_end if o is not h
                      and my_ends & {access(f) for f in o.fds_at_end()}
                      and not any(w.holding is o for w in waiting)]
            leaks.append(Leak(h, ch, fds, ends, source, _chain(source, p, ch), h.holds_at_end,
                              waiting, others, giver if second else None,
                              held_after if second else None, let_go, outside,
                              tree.end if stopped else None))
    # The ones someone waits for first, then the alive ones, then by time.
    leaks.sort(key=lambda lk: (not (lk.waiting or lk.reader_outside), not lk.alive,
                               lk.process.start, lk.fds))
    return leaks


def analyze_fds(tree: ProcessTree) -> FdReport:
    """Channels (pipes and sockets) and leaked descriptors of a recording."""
    chans, observed, any_data = channels(tree)
    leaks = _leaks(chans, tree)
    if leaks:
        att = attribute(tree)
        for lk in leaks:
            lk.test = att.test_of(lk.process)
    return FdReport(chans, leaks, any_data, observed, tree.end, long_after(tree))


# ---------------------------------------------------------------------------
# Findings in words: sentences as text and process references

CHAIN_MAX = 6  # longer chains name their first 2 and last 3 processes


@dataclass(frozen=True, slots=True)
class Ref:
    """A process a sentence names; each renderer words it (and may link it)."""

    process: Process
    fds: tuple[int, ...] = ()  # its descriptor numbers to name with it
    full: bool = False  # its program with the arguments, not only the program
    at: int | None = None  # named by the program it ran then (and the last, when different)
    note: str = ""  # more words after its pid: ``(pid 42, pipe:[7])``
    bare: bool = False  # its program's name alone, no pid: a mention, never a link

    @property
    def key(self) -> tuple[int, int]:
        return self.process.key


@dataclass(frozen=True, slots=True)
class TestRef:
    """A test a sentence names; each renderer words it (render.tests.test_words) and
    may link it (the HTML report: its row of the tests table)."""

    __test__ = False  # not a pytest test class
    test: Test


Segment = str | Ref | TestRef
Line = list[Segment]


def fd_list(fds: Sequence[int]) -> str:
    """``fd 3``, ``fds 1, 3``."""
    return ("fd " if len(fds) == 1 else "fds ") + ", ".join(str(f) for f in fds)


def rel_time(ns: int, t0: int) -> str:
    """``+1.250s``: seconds from the recording's start."""
    return f"+{(ns - t0) / 1e9:.3f}s"


def joined(items: Sequence[Line]) -> Line:
    """Segments of each item joined as "a, b and c"."""
    out: Line = []
    for i, item in enumerate(items):
        if i:
            out.append(" and " if i == len(items) - 1 else ", ")
        out.extend(item)
    return out


def merged(line: Line) -> Line:
    """Adjacent text pieces joined into one."""
    out: Line = []
    for g in line:
        if isinstance(g, str) and out and isinstance(out[-1], str):
            out[-1] += g
        elif g != "":
            out.append(g)
    return out


def _what(ch: Channel, ends: Sequence[str]) -> str:
    if ch.kind != "pipe":
        return f"a socket ({ch.name})"
    said = "".join(str(g) for g in joined([[e] for e in ends]))
    return f"a pipe ({said} end, {ch.name})" if ends else f"a pipe ({ch.name})"


def _chain_words(lk: Leak) -> Line:
    if not lk.chain:
        return ["it inherited it directly"]
    nxt = [q for q, _ in lk.chain[1:]] + [lk.process]
    items: list[Line] = [[Ref(q, tuple(fds), at=n.start)]
                         for (q, fds), n in zip(lk.chain, nxt, strict=True)]
    if len(items) > CHAIN_MAX:
        items = [*items[:2], [f"{len(items) - 5} more"], *items[-3:]]
    return ["it inherited it through ", *joined(items)]


def _holders(ws: Iterable[Waiter]) -> Line:
    return joined([[Ref(w.process, tuple(w.fds))] for w in ws])


def _downstream(ws: Sequence[Waiter]) -> list[Line]:
    out: list[Line] = []
    for w in ws:
        for ch, readers in w.downstream:
            verb = "waits" if len(readers) == 1 else "wait"
            out.append([*_holders(readers), f" {verb} in turn on the output of ",
                        Ref(w.process, note=ch.name), "."])
            out.extend(_downstream(readers))
    return out


def _signal(p: Process) -> str:
    if p.exit is None or p.exit.signal is None:
        return ""
    try:
        return f" (killed by {signal.Signals(p.exit.signal).name})"
    except ValueError:
        return f" (killed by signal {p.exit.signal})"


def _hold_sentence(lk: Leak, t0: int) -> Line:
    """How long it held it, and after whom."""
    p = lk.process
    if lk.giver is not None and lk.held_after is not None:
        after: Line = [f"{fmt_duration(lk.held_after)} after ", Ref(lk.giver),
                       f", which it inherited it from, had exited at "
                       f"{rel_time(lk.let_go - lk.held_after, t0)}"]
        if lk.alive and lk.stopped_at is not None:
            return [Ref(p, bare=True), " was still holding it when the recording stopped "
                    "(no End event: the recorder was killed), at least ", *after, "."]
        if lk.alive:
            return [Ref(p, bare=True), " was still holding it when the recording ended, ",
                    *after, "."]
        how = (f"until it exited at {rel_time(lk.let_go, t0)}{_signal(p)}"
               if lk.holding.closed_before is None else
               f"until it closed it (by {rel_time(lk.let_go, t0)})")
        return [Ref(p, bare=True), f" held it {how}, ", *after, "."]
    if lk.alive:
        return [Ref(p, bare=True), " was still running when the recording ended."]
    assert p.exit is not None and lk.source.exit is not None
    return [Ref(p, bare=True), f" held it until it exited at {rel_time(p.exit.timestamp, t0)}, "
            "after ", Ref(lk.source), f" had exited at {rel_time(lk.source.exit.timestamp, t0)}."]


def _reader_sentence(lk: Leak, w: Waiter, t0: int) -> Line:
    """A reader that finished during the recording: before or after the leaker let go."""
    ch = lk.channel
    until = w.until
    line: Line = [Ref(w.process, tuple(w.fds))]
    if w.seen:
        line.append(f" was waiting on the read end of {ch.name}")
    else:
        line.append(f" was waiting on the read end of {ch.name}, as far as one can tell "
                    "(it never exec'd, so its descriptors were not recorded)")
    if until is None:
        line.append(" and still was when the recording "
                    f"{'stopped' if lk.stopped_at is not None else 'ended'}.")
        return line
    gap = until - lk.let_go
    how = "exited" if w.process.exit_time == until else "let go of it"
    if abs(gap) < 1_000_000:
        line.extend([f"; it {how} at {rel_time(until, t0)}{_signal(w.process)}, within 1 ms of ",
                     Ref(lk.process, bare=True), " letting go"])
    elif gap >= 0:
        line.append(f"; it {how} {fmt_duration(gap)} after "
                    f"{'the recording lost sight of ' if lk.alive else ''}")
        line.extend([Ref(lk.process, bare=True), " let go"])
    else:
        line.extend([f"; it {how} at {rel_time(until, t0)}{_signal(w.process)}, "
                     f"{fmt_duration(-gap)} before ", Ref(lk.process, bare=True), " let go"])
    line.append(".")
    return line


def leak_sentences(lk: Leak, t0: int) -> list[Line]:
    """One leak: what it holds and whence, then whether it ran on, who waits, who else holds."""
    p, ch = lk.process, lk.channel
    if ch.rule == "outside":
        origin: Line = ["that came from outside the recording (", Ref(lk.source),
                        ", the first process, was started with it)"]
    else:
        first = (lk.chain[0][0] if lk.chain else lk.process).start
        origin = ["that ", Ref(lk.source, at=first), " opened"]
    lines: list[Line] = [[Ref(p, full=True), f" holds {fd_list(lk.fds)}, {_what(ch, lk.ends)} ",
                          *origin, "; ", *_chain_words(lk), "."]]
    lines.append(_hold_sentence(lk, t0))
    alive_w = [w for w in lk.waiting if w.seen and w.until is None]
    if alive_w:
        verb = "is" if len(alive_w) == 1 else "are"
        lines.append([*_holders(alive_w), f" {verb} still waiting on the read end of {ch.name}."])
        lines.extend(_downstream(alive_w))
    lines.extend(_reader_sentence(lk, w, t0) for w in lk.waiting if w not in alive_w)
    if lk.reader_outside:
        lines.append([f"Its read end is outside the recording: whoever started the recorder "
                      f"(a CI runner, a `| cat`) waits on {ch.name}."])
    elif not lk.waiting and lk.alive and ch.kind == "pipe" and WRITE in lk.ends:
        lines.append(["No recorded process still holds the read end."])
    if lk.others:
        items: list[Line] = [[Ref(h.process, tuple(f.fd for f in h.fds_at_end()))]
                             for h in lk.others]
        lines.append(["Also still holding the same end: ", *joined(items), "."])
    if lk.test is not None:
        lines.append(test_sentence(lk, lk.test))
    return [merged(line) for line in lines]


def test_sentence(lk: Leak, test: Test) -> Line:
    """Which test left the culprit behind: ``test 'x' (leak.bats, test 1) started
    sleep (pid 42, fd 3), which kept a pipe from bats open (pipe:[7])``."""
    ch = lk.channel
    return [TestRef(test), " started ", Ref(lk.process, tuple(lk.fds)),
            f", which kept a {ch.kind} from ", Ref(lk.source, bare=True),
            f" open ({ch.name})."]


_RULES = {
    "seen": "seen holding it first",
    "ancestor": "nearest common ancestor of its holders, never seen holding it",
    "parent": "it held it when it forked ",
    "first-seen": "first seen holding it (its holders share no ancestor)",
}


def opener_sentence(ch: Channel) -> Line:
    """Who opened a pipe or socket, and by which rule."""
    if ch.rule == "outside":
        assert ch.entered_by is not None
        return ["came from outside the recording (the first process, ", Ref(ch.entered_by),
                ", was started with it)"]
    assert ch.opener is not None
    at = min(h.since for h in ch.holders)
    line: Line = ["opened by ", Ref(ch.opener, at=at), ": " + _RULES[ch.rule]]
    if ch.rule == "parent":
        child = next((h.process for h in ch.holders if h.process.parent is ch.opener), None)
        line.append(Ref(child) if child is not None else "a holder")
    return merged(line)


__all__ = [
    "CHAIN_MAX",
    "CHANNEL_KINDS",
    "Channel",
    "FdReport",
    "Holding",
    "Leak",
    "Line",
    "Observation",
    "Ref",
    "Segment",
    "Sighting",
    "Since",
    "TestRef",
    "Until",
    "Waiter",
    "access",
    "analyze_fds",
    "ancestors",
    "channels",
    "common_ancestor",
    "fd_list",
    "is_ancestor",
    "leak_sentences",
    "observations",
    "opener_sentence",
    "rel_time",
    "test_sentence",
]
