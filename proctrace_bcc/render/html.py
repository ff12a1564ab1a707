"""`analyze -d html`: one self-contained HTML report, like `cargo build --timings`.

The page needs no network: CSS and JS are inline (read from ``render/assets/``) and a
Content-Security-Policy forbids every fetch and every script but ours (by hash).  The
recording's data is one JSON block (``<script type="application/json">``) in which
``<``, ``>`` and ``&`` are written ``\\u003c``, ``\\u003e``, ``\\u0026``, so no argv can
close the element; the script puts text on the page only through ``textContent`` and
canvas ``fillText``.

The timeline draws only the rows in view on a canvas, so 50,000 processes stay
responsive.  Data is columnar (one array per field, named; a string table for commands
and argv) to keep the file small, and every code in it (outcomes, descriptor kinds,
holding states, marks) comes with its table of names and words (``codes``), so the
script knows no number's meaning by heart: see :func:`report_data`.

When the recording has descriptor data (`record --fds`), a "Descriptors" section shows
the leaks and the pipes and sockets found by :func:`proctrace_bcc.fds.analyze_fds`:
their sentences (text and process references) worded as `analyze -d fds` words them
(:mod:`proctrace_bcc.render.fds`), each process reference a link to its timeline row:
see :func:`fds_data`.
"""

from __future__ import annotations

import base64
import errno as _errno
import hashlib
import html
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from proctrace_bcc import __version__
from proctrace_bcc.attribution import attribute
from proctrace_bcc.events import display
from proctrace_bcc.fds import (
    CHANNEL_KINDS,
    Holding,
    Line,
    TestRef,
    Until,
    analyze_fds,
    leak_sentences,
    opener_sentence,
)
from proctrace_bcc.hang import analyze_hang, hang_sentences, heading
from proctrace_bcc.read import Recording
from proctrace_bcc.render import json_safe
from proctrace_bcc.render._common import (
    NONZERO,
    OK,
    RUNNING,
    SIGNALED,
    UNKNOWN,
    concurrency,
    header_command,
    outcome,
    quoted_argv,
    spans,
    tree_rows,
)
from proctrace_bcc.render.fds import (
    MARK_WORDS,
    NO_LEAKS,
    SINCE_WORDS,
    UNTIL_WORDS,
    Mark,
    ends_words,
    holder_command,
    words,
)
from proctrace_bcc.render.names import label
from proctrace_bcc.render.names import name as fd_name
from proctrace_bcc.tree import Process, ProcessTree


@cache
def _asset(name: str) -> str:
    return (resources.files("proctrace_bcc.render") / "assets" / name).read_text("utf-8")


class _Strings:
    """A string table: each distinct string once, referenced by index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.items: list[str] = []

    def __call__(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.items)
            self.items.append(s)
        return i


Key = tuple[int, int]  # Process.key: (pid, start)


def _codes(table: dict[Any, Any]) -> list[Any]:
    """A code table as the data carries it: entry i describes code i."""
    assert sorted(table) == list(range(len(table))), table
    return [table[k] for k in sorted(table)]


FAILED = (NONZERO, SIGNALED)
# Process outcomes (render._common's codes): a name (the script's colours are by name),
# the legend's words, and whether it counts as failed.
OUTCOME_CODES = _codes({c: {"name": n, "label": w, "failed": c in FAILED} for c, n, w in [
    (OK, "ok", "exit 0"), (NONZERO, "nonzero", "non-zero exit"),
    (SIGNALED, "signaled", "killed by a signal"), (RUNNING, "running", "never exited"),
    (UNKNOWN, "unknown", "exited, status unknown")]})


# Failed execs: a PATH miss (ENOENT, then a successful exec of the same name: a shell
# or `#!/usr/bin/env` trying each PATH entry) or a real failure.
FAILED_EXEC_CODES = _codes({0: {"name": "failed", "label": "failed exec"},
                            1: {"name": "miss", "label": "PATH miss (the same name ran "
                                "from a later PATH entry)"}})
ROW_NAME_MAX = 120  # characters of a row's short name (the details show the whole argv)


def row_name(p: Process) -> str:
    """A timeline row's name: the short name and arguments (render.names), and
    ``(fork)`` for a process that never exec'd."""
    name = label(p, ROW_NAME_MAX)
    return f"{name} (fork)" if not p.execs and p.fork_time is not None else name


def path_misses(p: Process) -> list[bool]:
    """For each of p's failed execs, whether it was a PATH miss: ENOENT, and p then
    exec'd a program of the same base name."""
    ran = [(e.timestamp, os.path.basename(e.filename or "")) for e in p.execs]
    return [f.errno == _errno.ENOENT and any(
        t >= f.timestamp and base == os.path.basename(f.filename or "") for t, base in ran)
        for f in p.failed_execs]


def report_data(rec: Recording, tree: ProcessTree) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-able data.

    Times are nanoseconds from the recording's first event.  A table is columnar: one
    array per named field, entry i of each is row i.  ``processes``: rows in tree order
    (a parent before its subtree, children in fork order), ``outcome`` a code described
    by ``codes.outcome``, ``parent`` a row (-1: none);
    ``span0[i]:span0[i+1]`` are row i's exec spans in ``spans``; ``failed_execs`` lists
    failed execs by ``row``; ``concurrency``: processes ``alive`` from each ``time`` on.
    Texts (commands, argv, files) are indices into ``strings`` (-1: none).
    """
    rows = tree_rows(tree)
    t0, end = tree.start, tree.end
    strings = _Strings()
    index = {p.key: i for i, p in enumerate(rows)}

    def rel(t: int) -> int:
        return t - t0

    pp: dict[str, list[Any]] = {k: [] for k in (
        "pid", "ppid", "pgid", "sid", "parent", "start", "end", "outcome", "status", "cmd",
        "forked", "span0")}
    ss: dict[str, list[int]] = {"start": [], "end": [], "label": [], "argv": [], "file": []}
    fe: dict[str, list[int]] = {"row": [], "time": [], "file": [], "error": [], "kind": []}
    execs = failed = signaled = running = 0
    for i, p in enumerate(rows):
        oc = outcome(p)
        pp["pid"].append(p.pid)
        pp["ppid"].append(p.ppid)
        pp["pgid"].append(p.pgid)
        pp["sid"].append(p.sid)
        pp["parent"].append(index.get(p.parent.key, -1) if p.parent is not None else -1)
        pp["start"].append(rel(p.start))
        pp["end"].append(rel(p.end_time(end)))
        pp["outcome"].append(oc)
        pp["status"].append(strings(p.status()))
        pp["cmd"].append(strings(row_name(p)))
        pp["forked"].append(1 if p.fork_time is not None else 0)
        pp["span0"].append(len(ss["start"]))
        for sp in spans(p, end):
            ss["start"].append(rel(sp.start))
            ss["end"].append(rel(sp.end))
            ss["label"].append(strings(display(sp.label)))
            ss["argv"].append(strings(quoted_argv(sp.image)) if sp.image is not None else -1)
            fn = sp.image.filename if sp.image is not None else None
            ss["file"].append(strings(display(fn)) if fn is not None else -1)
        for f, miss in zip(p.failed_execs, path_misses(p), strict=True):
            fe["kind"].append(1 if miss else 0)
            fe["row"].append(i)
            fe["time"].append(rel(f.timestamp))
            fe["file"].append(strings(display(f.filename)))
            fe["error"].append(strings(_errno.errorcode.get(f.errno, f"errno {f.errno}")))
        execs += len(p.execs)
        failed += oc in FAILED
        signaled += oc == SIGNALED
        running += oc == RUNNING
    pp["span0"].append(len(ss["start"]))

    ct, cn = concurrency(rows, end)
    peak, peak_at = 0, 0
    for t, n in zip(ct, cn, strict=True):
        if n > peak:
            peak, peak_at = n, t
    h = tree.header
    summary: dict[str, Any] = {
        "command": header_command(tree, rows),
        "start_time": _start_time(h.start_time) if h is not None else "",
        "duration": end - t0,
        "processes": len(rows),
        "execs": execs,
        "failed": failed,
        "signaled": signaled,
        "running": running,
        "lost": tree.lost,
        "peak": peak,
        "peak_at": rel(peak_at),
        "backend": h.backend if h is not None else ("proctrace (original)" if rec.legacy else ""),
        "host": h.hostname if h is not None else "",
        "kernel": h.kernel if h is not None else "",
        "end_reason": tree.end_event.reason if tree.end_event is not None else "",
        "recording": Path(rec.path).name,
    }
    fds = fds_data(tree, index, strings, rec.events)
    out: dict[str, Any] = {
        "version": 2,
        "generator": f"proctrace-bcc {__version__}",
        "summary": summary,
        "end": end - t0,
        "codes": {"outcome": OUTCOME_CODES, "failed_exec": FAILED_EXEC_CODES},
        "strings": strings.items,
        "processes": pp,
        "spans": ss,
        "failed_execs": fe,
        "concurrency": {"time": [rel(t) for t in ct], "alive": cn},
    }
    if fds is not None:
        out["fds"] = fds
    tests = tests_data(tree, index, strings)
    if tests is not None:
        out["tests"] = tests
    return out


def tests_data(tree: ProcessTree, index: dict[Key, int], strings: _Strings
               ) -> dict[str, Any] | None:
    """The tests table (proctrace_bcc.attribution; None: no test seen): one entry per
    test in run order (``first``: its first process's row), and ``row_test``: each
    row's test (-1: the suite's), for the timeline's "only this test"."""
    att = attribute(tree)
    if not att.tests:
        return None
    t0 = tree.start
    cols: dict[str, list[Any]] = {k: [] for k in (
        "name", "file", "number", "start", "duration", "procs", "failed", "left", "outcome",
        "first")}
    row_test = [-1] * len(index)
    for i, t in enumerate(att.tests):
        cols["name"].append(strings(t.name))
        cols["file"].append(strings(os.path.basename(t.file)) if t.file else -1)
        cols["number"].append(t.number)
        cols["start"].append(t.start - t0)
        cols["duration"].append(t.duration(tree.end))
        cols["procs"].append(len(t.processes))
        cols["failed"].append(len(t.failed))
        cols["left"].append(len(t.leftovers))
        cols["outcome"].append(strings(t.outcome or ""))
        cols["first"].append(index.get(t.processes[0].key, -1))
        for p in t.processes:
            r = index.get(p.key)
            if r is not None:
                row_test[r] = i
    return {"tests": cols, "row_test": row_test}


# ---------------------------------------------------------------------------
# The descriptors section

LEAKS_MAX = 100  # leaks shown (the text report, `analyze -d fds`, lists them all)
CHANNELS_MAX = 300  # pipes and sockets shown
HANG_MAX = 300  # lines of the hang snapshot's waiting chain shown
HOLDERS_MAX = 100  # holders shown per pipe or socket


def _segments(line: Line, st: _Strings, index: dict[Key, int]) -> list[int | dict[str, int]]:
    """A sentence for the page: text as a string index, a process as ``{text, row}``.

    A process is worded as render.fds words it; it links to its row unless the
    sentence names it without its pid (or it has no row): then it is text.
    """
    pieces: list[str | dict[str, int]] = []
    for g in line:
        row = None if isinstance(g, (str, TestRef)) or g.bare else index.get(g.key)
        if row is not None:
            pieces.append({"text": st(words(g)), "row": row})
        elif pieces and isinstance(pieces[-1], str):
            pieces[-1] += words(g)
        else:
            pieces.append(words(g))
    return [st(g) if isinstance(g, str) else g for g in pieces]


def _shown_holders(holders: list[Holding], keep: set[int]) -> list[Holding]:
    """At most HOLDERS_MAX, in order: the marked and still-open ones first in line."""
    if len(holders) <= HOLDERS_MAX:
        return holders
    first = [h for h in holders if id(h) in keep or h.holds_at_end][:HOLDERS_MAX]
    chosen = {id(h) for h in first}
    for h in holders:
        if len(chosen) >= HOLDERS_MAX:
            break
        chosen.add(id(h))
    return [h for h in holders if id(h) in chosen]


def _table(fields: Sequence[str]) -> dict[str, list[Any]]:
    return {f: [] for f in fields}


FDS_CODES = {
    "kind": list(CHANNEL_KINDS),
    "since": _codes(SINCE_WORDS),
    "until": _codes({u: {"text": UNTIL_WORDS[u], "at_end": u.at_end} for u in Until}),
    "mark": _codes(MARK_WORDS),
}


def _hang_data(tree: ProcessTree, events: Iterable[object], st: _Strings,
               index: dict[Key, int]) -> dict[str, Any] | None:
    rep = analyze_hang(tree, events)
    if rep is None:
        return None
    return {"head": st(heading(rep, tree.start)),
            "lines": [{"depth": d, "segs": _segments(line, st, index)}
                      for d, line in hang_sentences(rep, HANG_MAX)]}


def fds_data(tree: ProcessTree, index: dict[Key, int], strings: _Strings | None = None,
             events: Iterable[object] = ()) -> dict[str, Any] | None:
    """The descriptors section's data; None when the recording has no descriptor data.

    `index` maps a process's key to its timeline row.  ``leaks``: ``lines``, the
    sentences of `analyze -d fds` for that leak as segments; ``chain``, the fork path
    from the process it came from down to the leaker, ``{row, name, fds}`` each;
    ``row``, the leaker's.  ``channels`` (a table): ``name`` as /proc shows it
    (``pipe:[INO]``), ``kind`` (codes.kind), ``opener`` (segments), ``open_at_end``
    (holders still holding it), ``hidden`` (holders not shown), and
    ``holder0[k]:holder0[k+1]``, channel k's rows in ``holders`` (a table): ``row``,
    ``command``, ``fds``, ``end`` (read, write, read+write...), ``since`` (time) and
    ``since_kind`` (codes.since: its words, {t} the time), ``until`` (time or null) and
    ``until_kind`` (codes.until: words, held at the end), ``mark`` (codes.mark).  A
    segment is a string index (text) or ``{text, row}`` (a link to that row).  Every
    text is an index into `strings`.  Times are ns from the recording's first event.
    ``none``: why no leak is reported (render.fds.NO_LEAKS).  ``hang``: the hang
    snapshot among `events` (proctrace_bcc.hang), ``{head, lines}``, each line
    ``{depth, segs}``; null without one.
    """
    rep = analyze_fds(tree)
    if not rep.has_data:
        return None
    st = strings if strings is not None else _Strings()
    t0 = tree.start
    leaked_at: set[tuple[int, int]] = set()
    waiting_at: set[tuple[int, int]] = set()
    leaks: list[dict[str, Any]] = []
    for i, lk in enumerate(rep.leaks):
        leaked_at.add((id(lk.channel), id(lk.process)))
        waiting_at.update((id(ch), id(w.process)) for ch, w in lk.waiters())
        if i >= LEAKS_MAX:
            continue
        leaks.append({
            "row": index.get(lk.process.key, -1),
            "lines": [_segments(line, st, index) for line in leak_sentences(lk, t0)],
            "chain": [{"row": index.get(r.key, -1), "name": st(fd_name(r.process)),
                       "fds": list(r.fds)} for r in lk.path()],
        })
    leaked_chans = {c for c, _ in leaked_at}
    order = sorted(rep.channels, key=lambda c: (id(c) not in leaked_chans, not c.open_at_end))
    chans = _table(("name", "kind", "opener", "open_at_end", "hidden", "holder0"))
    holders = _table(("row", "command", "fds", "end", "since", "since_kind", "until",
                      "until_kind", "mark"))
    kinds = {k: i for i, k in enumerate(CHANNEL_KINDS)}
    for ch in order[:CHANNELS_MAX]:
        marks = {id(h): (Mark.LEAKED if (id(ch), id(h.process)) in leaked_at else
                         Mark.WAITING if (id(ch), id(h.process)) in waiting_at else Mark.NONE)
                 for h in ch.holders}
        shown = _shown_holders(ch.holders, {k for k, v in marks.items() if v})
        chans["name"].append(ch.name)
        chans["kind"].append(kinds[ch.kind])
        chans["opener"].append(_segments(opener_sentence(ch), st, index))
        chans["open_at_end"].append(len(ch.open_at_end))
        chans["hidden"].append(len(ch.holders) - len(shown))
        chans["holder0"].append(len(holders["row"]))
        for h in shown:
            until = h.until
            holders["row"].append(index.get(h.process.key, -1))
            holders["command"].append(st(holder_command(h.process)))
            holders["fds"].append(h.fds)
            holders["end"].append(st(ends_words(h)))
            holders["since"].append(h.since - t0)
            holders["since_kind"].append(int(h.since_kind))
            holders["until"].append(until - t0 if until is not None else None)
            holders["until_kind"].append(int(h.until_kind))
            holders["mark"].append(int(marks[id(h)]))
    chans["holder0"].append(len(holders["row"]))
    pipes = sum(1 for c in rep.channels if c.kind == "pipe")
    return {
        "pipes": pipes,
        "sockets": len(rep.channels) - pipes,
        "observed": rep.processes_observed,
        "open_at_end": sum(1 for c in rep.channels if c.open_at_end),
        "nleaks": len(rep.leaks),
        "none": st(NO_LEAKS),
        "hang": _hang_data(tree, events, st, index),
        "codes": FDS_CODES,
        "leaks": leaks,
        "channels": chans,
        "holders": holders,
    }


def _start_time(iso: str) -> str:
    """'2024-05-01T12:00:00.123456+00:00' -> '2024-05-01 12:00:00.123 +00:00'."""
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    out = dt.strftime("%Y-%m-%d %H:%M:%S") + f".{dt.microsecond // 1000:03d}"
    off = dt.utcoffset()
    if off is not None:
        minutes = int(off.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        out += f" {sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return out


def json_for_script(data: Any) -> str:
    """JSON that is safe inside an HTML <script> element: no '<', '>' or '&' at all, and
    no control or bidi character raw (json_safe; U+2028/U+2029 included)."""
    raw = json_safe(orjson.dumps(data)).decode("utf-8")
    return raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
style-src 'unsafe-inline'; script-src '@HASH@'; base-uri 'none'; form-action 'none'">
<meta name="generator" content="@GENERATOR@">
<title>@TITLE@</title>
<style>
@CSS@</style>
</head>
<body>
<header><h1>proctrace report</h1><div id="cmd"></div></header>
<section id="summary-sec"><dl id="summary"></dl></section>
<section id="tl-sec">
<div class="toolbar">
<input id="filter" type="search" placeholder="Filter: command, argv or pid" \
aria-label="Filter processes">
<span id="filter-count"></span>
<button id="zoom-in" title="Zoom in">+</button>
<button id="zoom-out" title="Zoom out">&minus;</button>
<button id="zoom-fit" title="Show the whole recording">Fit</button>
<button id="expand-all">Expand all</button>
<button id="collapse-all">Collapse all</button>
<span id="legend"></span>
</div>
<div class="hint">Ctrl+wheel (or Alt+wheel): zoom &middot; Shift+wheel or drag: pan &middot; \
drag on the chart: zoom to a range &middot; double-click: fit &middot; click &#9662;: \
collapse &middot; click a row: details</div>
<div id="conc-box"><canvas id="conc"></canvas></div>
<div id="tl-wrap"><canvas id="tl"></canvas><div id="tl-spacer"></div></div>
<div id="details" hidden></div>
</section>
@TESTS@@FDS@<section>
<h2>Slowest processes <span class="note" id="slowest-note"></span></h2>
<table id="slowest"><thead><tr><th>pid</th><th>command</th><th>start</th><th>duration</th>\
<th>exit</th></tr></thead><tbody></tbody></table>
</section>
<section>
<h2>Failed processes <span class="note" id="failed-note"></span></h2>
<table id="failed"><thead><tr><th>pid</th><th>command</th><th>start</th><th>duration</th>\
<th>exit</th></tr></thead><tbody></tbody></table>
</section>
<div id="tip" role="tooltip" hidden></div>
<script type="application/json" id="proctrace-data">"""

_TESTS_SECTION = """<section id="tests-sec">
<h2>Tests <span class="note" id="tests-note"></span></h2>
<table id="tests"><thead><tr><th>#</th><th>test</th><th>file</th><th>start</th>\
<th>duration</th><th>processes</th><th>failed</th><th>left running</th><th>outcome</th>\
<th>timeline</th></tr></thead><tbody></tbody></table>
</section>
"""

_FDS_SECTION = """<section id="fds-sec">
<h2>Descriptors <span class="note" id="fds-note"></span></h2>
<p id="fds-summary"></p>
<h3>Leaked descriptors <span class="note" id="fds-leaks-note"></span></h3>
<div id="fds-leaks"></div>
<h3>Pipes and sockets <span class="note" id="fds-chan-note"></span></h3>
<table id="fds-chan"><thead><tr><th>pid</th><th>command</th><th>fds</th><th>end</th>\
<th>from</th><th>until</th><th>at end</th></tr></thead></table>
</section>
"""

_TAIL = """</script>
<script>
@JS@</script>
</body>
</html>
"""


def _script_hash(js: str) -> str:
    digest = hashlib.sha256(js.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def render(rec: Recording, tree: ProcessTree) -> Iterator[str]:
    yield from render_data(report_data(rec, tree))


def render_data(data: dict[str, Any]) -> Iterator[str]:
    """The page of a :func:`report_data` result."""
    js = _asset("report.js")
    css = _asset("report.css")
    if "</" in js or "</" in css:  # would end the element early
        raise AssertionError("report assets must not contain '</'")
    script = "\n" + js
    title = "proctrace: " + data["summary"]["command"]
    if len(title) > 120:
        title = title[:119] + "…"
    fill = {"HASH": _script_hash(script), "GENERATOR": html.escape(data["generator"]),
            "TITLE": html.escape(title), "CSS": css,
            "FDS": _FDS_SECTION if "fds" in data else "",
            "TESTS": _TESTS_SECTION if "tests" in data else ""}
    yield re.sub(r"@([A-Z]+)@", lambda m: fill[m.group(1)], _PAGE)
    yield json_for_script(data)
    yield _TAIL.replace("\n@JS@", script)
