"""`analyze -d tests`: one row per test in run order, then what each left behind.

The tests and their processes come from :mod:`proctrace_bcc.attribution`; the leaks
from :mod:`proctrace_bcc.fds` (with ``record --fds``).  A row::

     #  test                             file       start    duration  procs  failed  left  leaks
     1  starts a helper and forgets it   leak.bats  +0.790s  274 ms        8       0     1      1

``procs``: processes attributed to the test (its ``bats-exec-test`` included);
``failed``: those that exited non-zero or by a signal (not the ``bats-exec-test``,
whose exit is the test's outcome, ``ok`` / ``FAILED``); ``left``: those still running
after the test ended.  Then, per test, the processes it left running (the longest-lived
first: "test 1 left `sleep 3` (pid 42) running for 2.7 s after it ended"), its leaks
and the slowest tests.  A test named only by variables (pytest) lasts, as far as one
can tell, from its first process's start to the exit of the last one it waited for;
what ran past the latest it can have ended (the next test of the same runner started a
process, or the runner exited) was left running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from proctrace_bcc.attribution import Attribution, Test, attribute
from proctrace_bcc.fds import Leak, analyze_fds, rel_time
from proctrace_bcc.read import Recording
from proctrace_bcc.render import fmt_duration, oneline, shell_word
from proctrace_bcc.render._common import subtree_title
from proctrace_bcc.render.names import image, label
from proctrace_bcc.tree import Process, ProcessTree

LEFT_MAX = 10  # processes left running listed per test
SLOWEST = 5  # tests in the slowest list
NAME_MAX = 48  # characters of a test's name in the table


def test_words(t: Test) -> str:
    """A test as a sentence names it: ``test 'starts a server' (leak.bats, test 1)``."""
    where = [os.path.basename(t.file)] if t.file else []
    if t.number is not None:
        where.append(f"test {t.number}")
    word = shell_word(oneline(t.name))
    if not word.startswith(("'", "$'")):
        word = f"'{word}'"
    return f"test {word}" + (f" ({', '.join(where)})" if where else "")


def _short(t: Test) -> str:
    """The test's name for a table cell (one line, cut)."""
    s = oneline(t.name)
    return s if len(s) <= NAME_MAX else s[:NAME_MAX - 1] + "…"


def _duration(t: Test, end: int) -> str:
    d = fmt_duration(t.duration(end))
    return f"≥ {d}" if t.end is None else d


def _outcome(t: Test) -> str:
    o = t.outcome
    return {"ok": "ok", "failed": "FAILED", "running": "running"}.get(o or "", "")


def _who(p: Process) -> str:
    if image(p) is None:  # known only as a parent (the shell that ran `record`)
        return f"pid {p.pid}"
    return f"`{label(p)}` (pid {p.pid})"


def _left_line(t: Test, p: Process, tree: ProcessTree) -> str:
    ran = fmt_duration(t.outlived(p, tree.end))
    if p.exit is None:
        return f"{_who(p)} was still running {ran} after it ended, when the recording ended"
    return f"{_who(p)} ran on for {ran} after it ended ({p.status()})"


def _leak_line(lk: Leak) -> str:
    fds = ", ".join(str(f) for f in lk.fds)
    return (f"{_who(lk.process)} kept {lk.channel.kind} {lk.channel.name} (fd {fds}) "
            f"that {_who(lk.source)} opened")


def _table(att: Attribution, tree: ProcessTree, leaks: dict[int, list[Leak]] | None
           ) -> list[str]:
    head = ["#", "test", "file", "start", "duration", "procs", "failed", "left"]
    if leaks is not None:
        head.append("leaks")
    head.append("outcome")
    rows: list[list[str]] = [head]
    for i, t in enumerate(att.tests, 1):
        row = [str(i), _short(t), oneline(os.path.basename(t.file or "")),
               rel_time(t.start, tree.start), _duration(t, tree.end),
               str(len(t.processes)), str(len(t.failed)), str(len(t.leftovers))]
        if leaks is not None:
            row.append(str(len(leaks.get(id(t), []))))
        row.append(_outcome(t))
        rows.append(row)
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    numeric = {0, 5, 6, 7, 8} if leaks is not None else {0, 5, 6, 7}
    out = []
    for r in rows:
        cells = [(c.rjust(w) if i in numeric else c.ljust(w))
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
    return out


def _details(att: Attribution, tree: ProcessTree, leaks: dict[int, list[Leak]] | None
             ) -> Iterator[str]:
    for i, t in enumerate(att.tests, 1):
        its = (leaks or {}).get(id(t), [])
        if not (t.leftovers or t.failed or its):
            continue
        yield ""
        yield f"{i}. {test_words(t)}"
        for p in t.failed[:LEFT_MAX]:
            yield f"   failed: {_who(p)}: {p.status()}"
        if len(t.failed) > LEFT_MAX:
            yield f"   … and {len(t.failed) - LEFT_MAX} more failed"
        for p in t.leftovers[:LEFT_MAX]:
            yield f"   left running: {_left_line(t, p, tree)}"
        if len(t.leftovers) > LEFT_MAX:
            yield f"   … and {len(t.leftovers) - LEFT_MAX} more left running"
        for lk in its:
            yield f"   leak: {_leak_line(lk)}"


def _slowest(tests: Sequence[Test], tree: ProcessTree) -> Iterator[str]:
    ranked = sorted(tests, key=lambda t: -t.duration(tree.end))[:SLOWEST]
    if len(ranked) < 2:
        return
    yield ""
    yield "Slowest tests:"
    for t in ranked:
        yield f"  {_duration(t, tree.end):>10}  {test_words(t)}"


def report_lines(tree: ProcessTree) -> Iterator[str]:
    att = attribute(tree)
    rep = analyze_fds(tree)
    leaks: dict[int, list[Leak]] | None = None
    if rep.has_data:
        leaks = {}
        for lk in rep.leaks:
            t = att.test_of(lk.process)
            if t is not None:
                leaks.setdefault(id(t), []).append(lk)
    sub = subtree_title(tree)
    h = tree.header
    what = sub or (oneline(" ".join(h.command)) if h is not None and h.command else "")
    failed = sum(1 for t in att.tests if t.outcome == "failed")
    left = sum(1 for t in att.tests if t.leftovers)
    parts = [f"{len(att.tests)} test{'s' if len(att.tests) != 1 else ''}"]
    if failed:
        parts.append(f"{failed} failed")
    parts.append(f"{left} left processes running after {'it' if left == 1 else 'they'} ended")
    if leaks is not None:
        parts.append(f"{sum(len(v) for v in leaks.values())} leaked descriptors")
    yield f"Tests{' of ' + what if what else ''}: {', '.join(parts)}"
    if not att.tests:
        yield ("No test seen: no bats-exec-test process and no runner variable "
               "(`record --env tests` records pytest's and nextest's) in this recording.")
        return
    yield ""
    yield from _table(att, tree, leaks)
    yield from _details(att, tree, leaks)
    yield from _slowest(att.tests, tree)
    yield ""
    yield (f"Outside any test (the runner, suite setup): {len(att.suite)} "
           f"process{'es' if len(att.suite) != 1 else ''}.")


def render(rec: Recording, tree: ProcessTree) -> Iterator[str]:
    for line in report_lines(tree):
        yield line + "\n"
