"""`analyze -d html`: one self-contained HTML report, like `cargo build --timings`.

The page needs no network: CSS and JS are inline (read from ``render/assets/``) and a
Content-Security-Policy forbids every fetch and every script but ours (by hash).  The
recording's data is one JSON block (``<script type="application/json">``) in which
``<``, ``>`` and ``&`` are written ``\\u003c``, ``\\u003e``, ``\\u0026``, so no argv can
close the element; the script puts text on the page only through ``textContent`` and
canvas ``fillText``.

The timeline draws only the rows in view on a canvas, so 50,000 processes stay
responsive.  Data is columnar (one array per field, a string table for commands and
argv) to keep the file small: see :func:`report_data`.

When the recording has descriptor data (`record --fds`), a "Descriptors" section shows
the leaks and the pipes and sockets found by :func:`proctrace_bcc.fds.analyze_fds`, in
the words of `analyze -d fds` (:mod:`proctrace_bcc.render.fds`), each process mention
a link to its timeline row: see :func:`fds_data`.
"""

from __future__ import annotations

import base64
import errno as _errno
import hashlib
import html
import re
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from proctrace_bcc import __version__
from proctrace_bcc.events import display
from proctrace_bcc.fds import Channel, Holding, Leak, Waiter, analyze_fds
from proctrace_bcc.recording import Recording
from proctrace_bcc.render._common import (
    NONZERO,
    RUNNING,
    SIGNALED,
    concurrency,
    header_command,
    outcome,
    quoted_argv,
    spans,
    tree_rows,
)
from proctrace_bcc.render.fds import label as fd_label
from proctrace_bcc.render.fds import leak_lines, opener_words
from proctrace_bcc.render.fds import name as fd_name
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


def report_data(rec: Recording, tree: ProcessTree) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-able data.

    Times are nanoseconds from the recording's first event.  `p` holds one array per
    process field, rows in tree order (a parent before its subtree, children in fork
    order); `span0[i]:span0[i+1]` are row i's exec spans in `s`; `fe` lists failed execs.
    """
    rows = tree_rows(tree)
    t0, end = tree.start, tree.end
    strings = _Strings()
    index = {id(p): i for i, p in enumerate(rows)}

    def rel(t: int) -> int:
        return t - t0

    pp: dict[str, list[Any]] = {k: [] for k in (
        "pid", "ppid", "pgid", "sid", "parent", "start", "end", "outcome", "status", "cmd",
        "forked", "span0")}
    ss: dict[str, list[int]] = {"start": [], "end": [], "label": [], "argv": [], "file": []}
    fe: dict[str, list[int]] = {"proc": [], "t": [], "file": [], "err": []}
    execs = failed = signaled = running = 0
    for i, p in enumerate(rows):
        oc = outcome(p)
        pp["pid"].append(p.pid)
        pp["ppid"].append(p.ppid)
        pp["pgid"].append(p.pgid)
        pp["sid"].append(p.sid)
        pp["parent"].append(index.get(id(p.parent), -1) if p.parent is not None else -1)
        pp["start"].append(rel(p.start))
        pp["end"].append(rel(p.end_time(end)))
        pp["outcome"].append(oc)
        pp["status"].append(strings(p.status()))
        pp["cmd"].append(strings(display(p.command)))
        pp["forked"].append(1 if p.fork_time is not None else 0)
        pp["span0"].append(len(ss["start"]))
        for sp in spans(p, end):
            ss["start"].append(rel(sp.start))
            ss["end"].append(rel(sp.end))
            ss["label"].append(strings(display(sp.label)))
            ss["argv"].append(strings(quoted_argv(sp.image)) if sp.image is not None else -1)
            fn = sp.image.filename if sp.image is not None else None
            ss["file"].append(strings(display(fn)) if fn is not None else -1)
        for f in p.failed_execs:
            fe["proc"].append(i)
            fe["t"].append(rel(f.timestamp))
            fe["file"].append(strings(display(f.filename)))
            fe["err"].append(strings(_errno.errorcode.get(f.errno, f"errno {f.errno}")))
        execs += len(p.execs)
        failed += oc in (NONZERO, SIGNALED)
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
    fds = fds_data(tree, index, strings)
    out: dict[str, Any] = {
        "version": 1,
        "generator": f"proctrace-bcc {__version__}",
        "summary": summary,
        "end": end - t0,
        "strings": strings.items,
        "p": pp,
        "s": ss,
        "fe": fe,
        "conc": {"t": [rel(t) for t in ct], "n": cn},
    }
    if fds is not None:
        out["fds"] = fds
    return out


# ---------------------------------------------------------------------------
# The descriptors section

LEAKS_MAX = 100  # leaks shown (the text report, `analyze -d fds`, lists them all)
CHANNELS_MAX = 300  # pipes and sockets shown
HOLDERS_MAX = 100  # holders shown per pipe or socket

# Holder row codes (see fds_data).
FROM_FORK, FROM_EXEC, FROM_END = 0, 1, 2
UNTIL_EXIT, UNTIL_CLOSED, UNTIL_OPEN, UNTIL_ALIVE, UNTIL_UNKNOWN = 0, 1, 2, 3, 4
MARK_NONE, MARK_LEAKED, MARK_WAITING = 0, 1, 2

_PID_REF = re.compile(r"\(pid (\d+)[,)]")

Segment = str | list[Any]  # plain text, or [text, row]: a link to that timeline row


def linked(text: str, procs: list[Process], index: dict[int, int]) -> list[Segment]:
    """`text` cut into plain strings and [mention, row] links.

    A mention is how render.fds names a process, ``sleep 300 (pid 42, fd 3)``: the
    name before ``(pid N`` through the closing parenthesis.  `procs` are the processes
    the text can name (the first of a pid wins); a pid not among them stays text.
    """
    by_pid: dict[int, Process] = {}
    for p in procs:
        by_pid.setdefault(p.pid, p)
    out: list[Segment] = []
    pos = 0
    for m in _PID_REF.finditer(text):
        q = by_pid.get(int(m.group(1)))
        row = index.get(id(q)) if q is not None else None
        close = text.find(")", m.start())
        if q is None or row is None or close < 0 or m.start() < pos:
            continue
        name_end = m.start() - 1 if m.start() > 0 and text[m.start() - 1] == " " else m.start()
        names = sorted({fd_label(q), fd_name(q)}, key=lambda c: (-len(c), c))
        start = next((name_end - len(c) for c in names
                      if c and text.endswith(c, pos, name_end)), None)
        if start is None:  # named as it was at another time: its last word
            start = max(pos, text.rfind(" ", pos, name_end) + 1)
        if start > pos:
            out.append(text[pos:start])
        out.append([text[start:close + 1], row])
        pos = close + 1
    if pos < len(text):
        out.append(text[pos:])
    return out


def _encoded(segs: list[Segment], st: _Strings) -> list[int | list[int]]:
    """Segments with their text in the string table: an index, or [index, row]."""
    return [st(g) if isinstance(g, str) else [st(g[0]), g[1]] for g in segs]


def _waiter_procs(ws: list[Waiter], ch: Channel, into: set[tuple[int, int]]) -> list[Process]:
    """The processes of waiters, recursively; `into` gets (channel, process) pairs."""
    out: list[Process] = []
    for w in ws:
        out.append(w.holding.process)
        into.add((id(ch), id(w.holding.process)))
        for down, readers in w.downstream:
            out.extend(_waiter_procs(readers, down, into))
    return out


def _holder_row(h: Holding, t0: int, row: int, cmd: int, end: int, mark: int) -> list[Any]:
    frm = (FROM_FORK if h.since_fork
           else FROM_END if h.sightings[0].source == "end" else FROM_EXEC)
    if h.closed_before is not None:
        state, until = UNTIL_CLOSED, h.closed_before - t0
    elif h.holds_at_end:
        state, until = (UNTIL_OPEN if h.snapshot_at_end else UNTIL_ALIVE), None
    elif h.process.exit is not None:
        state, until = UNTIL_EXIT, h.process.exit.timestamp - t0
    else:
        state, until = UNTIL_UNKNOWN, None
    return [row, cmd, h.fds, end, h.since - t0, frm, until, state, mark]


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


def fds_data(tree: ProcessTree, index: dict[int, int],
             strings: _Strings | None = None) -> dict[str, Any] | None:
    """The descriptors section's data; None when the recording has no descriptor data.

    `index` maps id(process) to its timeline row.  ``leaks[]``: ``t``, the lines of
    `analyze -d fds` for that leak, as :func:`linked` segments; ``c``, the chain from
    the process it came from down to the leaker, ``[row, name, fds]`` each; ``r``, the
    leaker's row.  ``ch[]``: ``[name, opener segments, holders, open-at-end count,
    holders not shown]`` per pipe or socket (name as /proc shows it, ``pipe:[INO]``, so
    it says the kind); a holder is ``[row, command, fds, end, since, from, until,
    until-kind, mark]``: end ``read``, ``write``, ``read+write``..., from FROM_*,
    until-kind UNTIL_*, mark MARK_*.  Every text (segments, commands, names, ends) is
    an index into `strings`: a segment is ``i`` (plain text) or ``[i, row]`` (a link).
    Times are ns from the recording's first event.
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
        waiters = _waiter_procs(lk.waiting, lk.channel, waiting_at)
        if i >= LEAKS_MAX:
            continue
        procs = [lk.process, lk.source, *(q for q, _ in lk.chain), *waiters,
                 *(h.process for h in lk.others)]
        leaks.append({
            "r": index.get(id(lk.process), -1),
            "t": [_encoded(linked(s.strip(), procs, index), st) for s in leak_lines(lk, t0)],
            "c": _chain_data(lk, index, st),
        })
    leaked_chans = {c for c, _ in leaked_at}
    order = sorted(rep.channels, key=lambda c: (id(c) not in leaked_chans, not c.open_at_end))
    chans: list[list[Any]] = []
    for ch in order[:CHANNELS_MAX]:
        marks = {id(h): (MARK_LEAKED if (id(ch), id(h.process)) in leaked_at else
                         MARK_WAITING if (id(ch), id(h.process)) in waiting_at else MARK_NONE)
                 for h in ch.holders}
        shown = _shown_holders(ch.holders, {k for k, v in marks.items() if v})
        rows = []
        for h in shown:
            p = h.process
            cmd = fd_label(p)
            if not p.execs:
                cmd += (f" (fork of pid {p.parent.pid}, never exec'd)" if p.parent is not None
                        else " (no exec)")
            rows.append(_holder_row(h, t0, index.get(id(p), -1), st(cmd),
                                    st("+".join(h.ends) or "?"), marks[id(h)]))
        mentioned = [q for q in (ch.opener, ch.entered_by) if q is not None]
        mentioned += [h.process for h in ch.holders]
        chans.append([ch.name, _encoded(linked(opener_words(ch), mentioned, index), st), rows,
                      len(ch.open_at_end), len(ch.holders) - len(shown)])
    pipes = sum(1 for c in rep.channels if c.kind == "pipe")
    return {
        "pipes": pipes,
        "sockets": len(rep.channels) - pipes,
        "observed": rep.processes_observed,
        "open_at_end": sum(1 for c in rep.channels if c.open_at_end),
        "nleaks": len(rep.leaks),
        "leaks": leaks,
        "ch": chans,
    }


def _chain_data(lk: Leak, index: dict[int, int], st: _Strings) -> list[list[Any]]:
    src = lk.channel.holding(lk.source)
    items: list[tuple[Process, list[int]]] = [(lk.source, src.fds if src is not None else [])]
    items += lk.chain
    items.append((lk.process, lk.fds))
    return [[index.get(id(q), -1), st(fd_name(q)), fds] for q, fds in items]


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
    """JSON that is safe inside an HTML <script> element: no '<', '>' or '&' at all."""
    raw = orjson.dumps(data).decode("utf-8")
    return (raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


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
@FDS@<section>
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
    data = report_data(rec, tree)
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
            "FDS": _FDS_SECTION if "fds" in data else ""}
    yield re.sub(r"@([A-Z]+)@", lambda m: fill[m.group(1)], _PAGE)
    yield json_for_script(data)
    yield _TAIL.replace("\n@JS@", script)
