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
from proctrace_bcc.tree import ProcessTree


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
    return {
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
<section>
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
            "TITLE": html.escape(title), "CSS": css}
    yield re.sub(r"@([A-Z]+)@", lambda m: fill[m.group(1)], _PAGE)
    yield json_for_script(data)
    yield _TAIL.replace("\n@JS@", script)
