"""One streaming pass over a recording, for `analyze` and `ingest`.

A recording can hold millions of events; analysis must stay within a few times the
cost of merely parsing the file and keep memory proportional to the number of
processes, not events.  So a pass takes the reader's parsed dicts in timestamp order
(:mod:`proctrace_bcc.read`: one orjson parse per line, no event object per line) and

- builds the process tree with :class:`~proctrace_bcc.tree.FastBuilder` (the rules of
  :mod:`proctrace_bcc.tree`, reading the dicts directly; anything unusual goes through
  :func:`~proctrace_bcc.codec.event_from_obj` and the reference builder, which also
  produces the error messages);
- or, for modes that need no tree (sequential, by-process, ingest), only tracks which
  process each event belongs to with :class:`~proctrace_bcc.membership.Membership`;
- decides which processes belong to the analysed subtree while reading
  (:mod:`proctrace_bcc.lineage`).

`analyze` starts a pass again with the next order of :data:`~proctrace_bcc.read.ORDERS`
when the reader raises :class:`~proctrace_bcc.read.OutOfOrder` (its output is not
written yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from proctrace_bcc.attribution import attribute, select
from proctrace_bcc.codec import Slow, event_from_obj
from proctrace_bcc.errors import RecordingError, UsageError
from proctrace_bcc.events import EVENT_TYPES, End, Fork, Header, Lost, SetPGID
from proctrace_bcc.lineage import GLOBAL_KINDS, Subtree, first_fork_child, select_pid
from proctrace_bcc.membership import Light, Membership
from proctrace_bcc.read import DIRECT, Reader, Recording, Source, warn_unfinished
from proctrace_bcc.read.order import Obj
from proctrace_bcc.tree import FastBuilder, Process, ProcessTree, build_tree_with_owners

# One analysed event: (timestamp, line, kind, body, owner, in the subtree).  The owner
# is the tree.Process the event belongs to (a membership.Light with tree=False, None
# for Lost and End).
Item = tuple[int, int, str, dict[str, Any], Any, bool]


class Analysis:
    """One pass over a recording: events as dicts with owners, then the (sub)tree.

    The subtree analysed is, in order of precedence: ``root_pid`` (``-p``), the
    header's ``root_pid`` (not for raw recordings), for the original's recordings the
    child of the first event when it is a Fork (as the original did), else everything.
    """

    def __init__(self, source: Source, root_pid: int | None = None, *,
                 order: str = DIRECT, tree: bool = True, info: bool = False,
                 keep: TestSelection | None = None) -> None:
        self.reader = Reader(source)
        self.keep = keep  # --test: only the events of its processes are members
        self.tree = tree
        self.name = self.reader.name
        self.order = order
        self.explicit_root = root_pid is not None
        self.select_pid = select_pid(root_pid, self.reader.header)
        self.builder: FastBuilder | Membership = (
            FastBuilder(self.select_pid) if tree else Membership(self.select_pid, info))
        self.first: int | None = None
        self.last = 0
        self.lost = 0
        self.lost_events: list[Lost] = []
        self.end_event: End | None = None
        self.events_read = 0
        self._done = False

    def _error(self, lineno: int, exc: Exception) -> RecordingError:
        return RecordingError(self.name, self.reader.line_of(lineno), str(exc))

    def chunks(self) -> Iterator[list[Item]]:
        """Every event, in timestamp order, in lists of Items."""
        return self._pass(True)

    def run(self) -> None:
        """Consume every event (when only the tree is needed)."""
        for _ in self._pass(False):
            pass

    def _slow(self, ts: int, tag: str, body: dict[str, Any]) -> Process | Light | None:
        """Events the fast path declined: global kinds, unusual bodies, bad lines."""
        if tag in GLOBAL_KINDS:
            self._global(tag, body)
            return None
        if tag not in EVENT_TYPES:
            if tag == "Header":
                raise ValueError("Header must be the first line")
            raise ValueError(f"unknown event kind {tag!r}")
        return self.builder.add_obj(ts, tag, body)

    def _pass(self, collect: bool) -> Iterator[list[Item]]:
        """Build from the reader's chunks as they come (in timestamp order); with
        `collect`, also yield each chunk's Items."""
        b = self.builder
        fast = b.add_body
        slow = self._slow
        members = b.members
        n = 0
        last = self.last
        selecting = self.select_pid is not None
        keep = self.keep.has if self.keep is not None else None
        for chunk in self.reader.chunks(self.order):
            if not chunk:
                continue
            if n == 0:
                self._first(chunk[0])
                selecting = self.select_pid is not None
            n += len(chunk)
            out: list[Item] = []
            ap = out.append
            for ts, lineno, tag, body in chunk:
                try:
                    try:
                        owner = fast(ts, tag, body)
                    except Slow:
                        owner = slow(ts, tag, body)
                except (ValueError, KeyError, TypeError) as exc:
                    raise self._error(lineno, exc) from None
                if collect:
                    # lineage.Subtree.has, inlined
                    member = (not selecting) or (owner in members if owner is not None
                                                 else tag in GLOBAL_KINDS)
                    if keep is not None and owner is not None and member:
                        member = keep(owner.pid, ts)
                    ap((ts, lineno, tag, body, owner, member))
            last = max(last, chunk[-1][0])  # chunks are sorted
            yield out
        self.last = last
        self.events_read = n
        self._done = True
        if n and self.end_event is None:
            r = self.reader
            warn_unfinished(r.warnings, r.header, r.converted, self.first or 0, last)

    def _first(self, o: Obj) -> None:
        ts, _, tag, body = o
        self.first = ts
        if self.reader.legacy and self.select_pid is None:
            self.select_pid = self.builder.select_pid = first_fork_child(tag, body)

    def _global(self, tag: str, body: dict[str, Any]) -> None:
        ev = event_from_obj(tag, body)
        if isinstance(ev, Lost):
            self.lost += ev.count
            self.lost_events.append(ev)
        elif isinstance(ev, End):
            self.end_event = ev

    def check(self) -> None:
        """After the pass: RecordingError when there were no events or no root."""
        if not self._done:
            raise RuntimeError("Analysis checked before chunks() was consumed")
        r = self.reader
        b = self.builder
        if self.events_read == 0:
            raise RecordingError(self.name, r.header_line,
                                 "recording has a header but no events")
        if self.select_pid is not None:
            if b.root is None:
                if self.explicit_root:
                    raise RecordingError(self.name, None,
                                         f"pid {self.select_pid} does not appear in the "
                                         "recording")
                raise RecordingError(self.name, r.header_line,
                                     f"root pid {self.select_pid} does not appear in the "
                                     "recording (use -p to choose another root)")
        elif not (b.count if isinstance(b, Membership) else b.processes):
            raise RecordingError(self.name, r.last_line or None,
                                 "recording has no process events (no root)")

    def finish(self) -> tuple[Recording, ProcessTree]:
        """The recording's metadata (no events) and the tree of the selected processes."""
        self.check()
        r = self.reader
        b = self.builder
        if not isinstance(b, FastBuilder):
            raise RuntimeError("Analysis(tree=False) has no tree")
        h = r.header
        procs = b.processes
        last = self.last
        if self.select_pid is not None:
            root = b.root
            assert root is not None
            members = b.members
            processes = [p for p in procs if p in members]
            roots = [root]
            start = root.start
            if self.explicit_root:
                last = subtree_end(root, processes, h, last)
        else:
            processes = procs
            roots = [p for p in procs if p.parent is None]
            start = self.first if self.first is not None else 0
        tree = ProcessTree(processes=processes, roots=roots, header=h, start=start,
                           end=last, lost=self.lost, end_event=self.end_event,
                           lost_events=self.lost_events)
        rec = Recording(self.name, h, [], r.warnings, r.converted)
        return rec, tree

    @property
    def warnings(self) -> list[str]:
        return self.reader.warnings

    def release(self) -> None:
        """Drop the tree now, without the cycle collector (see release_tree)."""
        if isinstance(self.builder, FastBuilder):
            release_tree(self.builder.processes)
        self.builder.live.clear()
        self.builder.members.clear()


def release_tree(processes: Iterable[Process]) -> None:
    """Break the parent <-> children cycles so reference counting frees the tree.

    `analyze` runs with the cycle collector off (millions of long-lived objects); when
    it is turned back on, a collection would otherwise scan every object of the tree.
    """
    for p in processes:
        p.parent = None
        p.children = []


def subtree_end(root: Process, processes: list[Process], h: Header | None, end: int) -> int:
    """Where a `-p` subtree of a recording of CMD ends: its last exit (`end`, the
    recording's, if one of it still ran); `end` for CMD's own tree, and in a recording
    without CMD (system-wide: its `ingest` cut ends there too)."""
    if h is None or h.root_pid is None or root.pid == h.root_pid:
        return end
    return max(p.end_time(end) for p in processes)


class TestSelection:
    """`analyze --test TEXT`: the processes attributed to the tests TEXT names
    (:func:`proctrace_bcc.attribution.select`) and their descendants, in every mode.

    Tree modes get :meth:`tree`; event modes the events whose process is selected;
    the streaming modes (which track processes without the tree) :meth:`has`: an
    event of pid P at time t belongs to a selected process if one with that pid ran
    then."""

    def __init__(self, tree: ProcessTree, text: str) -> None:
        chosen, self.keep = select(tree, text)
        if not chosen:
            names = ", ".join(repr(t.name) for t in attribute(tree).tests[:20])
            raise UsageError(f"--test {text!r}: no test of this recording matches "
                             f"({'tests: ' + names if names else 'it has no test'})")
        self.spans: dict[int, list[tuple[int, int]]] = {}
        for p in self.keep:
            self.spans.setdefault(p.pid, []).append((p.start, p.end_time(tree.end)))

    def has(self, pid: int, t: int) -> bool:
        return any(a <= t <= b for a, b in self.spans.get(pid, ()))

    def tree(self, tree: ProcessTree) -> ProcessTree:
        keep = self.keep
        processes = [p for p in tree.processes if p in keep]
        return ProcessTree(processes=processes,
                           roots=[p for p in processes if p.parent not in keep],
                           header=tree.header, start=min(p.start for p in processes),
                           end=tree.end, lost=tree.lost, end_event=tree.end_event,
                           lost_events=tree.lost_events)


def restrict_test(rec: Recording, tree: ProcessTree, text: str | None
                  ) -> tuple[Recording, ProcessTree]:
    """restrict()'s result narrowed to `--test TEXT` (unchanged without)."""
    if text is None:
        return rec, tree
    sel = TestSelection(tree, text)
    events = []
    for ev in rec.events:
        # the process an event belongs to (tree._Builder.add): a Fork's is its child
        pid = (ev.child_pid if isinstance(ev, Fork) else ev.target_pid
               if isinstance(ev, SetPGID) else getattr(ev, "pid", None))
        if ev.KIND in GLOBAL_KINDS or (type(pid) is int and sel.has(pid, ev.timestamp)):
            events.append(ev)
    return Recording(rec.path, rec.header, events, rec.warnings, rec.legacy), sel.tree(tree)


def restrict(rec: Recording, root_pid: int | None) -> tuple[Recording, ProcessTree]:
    """For renderers that need every event object: the selected subtree of `rec`.

    Same selection rules as :class:`Analysis`; the events of other processes are
    dropped from the returned Recording (Lost and End are kept).
    """
    h = rec.header
    sel = select_pid(root_pid, h)
    if sel is None and h is None and rec.events:
        first = rec.events[0]
        if isinstance(first, Fork):
            sel = first.child_pid
    if not rec.events:
        raise RecordingError(rec.path, None, "recording has a header but no events")
    tree, owners = build_tree_with_owners(rec.events, h)
    if sel is None:
        if not tree.processes:
            raise RecordingError(rec.path, None, "recording has no process events (no root)")
        return rec, tree
    root = next((p for p in tree.processes if p.pid == sel), None)
    if root is None:
        if root_pid is not None:
            raise RecordingError(rec.path, None, f"pid {sel} does not appear in the recording")
        raise RecordingError(rec.path, 1, f"root pid {sel} does not appear in the recording "
                             "(use -p to choose another root)")
    sub = Subtree[Process](sel)
    sub.root = root
    sub.members = set(root.walk())
    events = [ev for ev, o in zip(rec.events, owners, strict=True) if sub.has(o, ev.KIND)]
    processes = [p for p in tree.processes if p in sub.members]
    end = tree.end if root_pid is None else subtree_end(root, processes, h, tree.end)
    subtree = ProcessTree(processes=processes,
                          roots=[root], header=h, start=root.start, end=end,
                          lost=tree.lost, end_event=tree.end_event,
                          lost_events=tree.lost_events)
    return Recording(rec.path, h, events, rec.warnings, rec.legacy), subtree
