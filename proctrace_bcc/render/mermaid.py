"""`analyze -d mermaid`: a Mermaid Gantt chart of the tree, as the original drew it.

One bar per exec span, processes in depth-first fork order; a process that exec'd
more than once gets its own section (``section PID execs``), the bars that follow go
back to ``section other``.  Times are milliseconds since the analysed root started
(``dateFormat x``), bars last at least 1 ms.  Bars of processes that exited 0 (or
whose status is unknown) are ``done``, failed ones ``crit`` with the status in the
label, and those that never exited ``active`` and labelled ``(never exited)``.

Labels keep the whole command.  Mermaid ends a task's text at the first ``:``, treats
``#...;`` as an entity and ``%%{...}%%`` as a directive, so those characters (and
``<>&"`` for the SVG, and controls) are written as Mermaid entity codes ``#NN;``,
which Mermaid turns back into the characters when it draws the chart.
"""

from __future__ import annotations

from collections.abc import Iterator

from proctrace_bcc.read import Recording
from proctrace_bcc.render import oneline
from proctrace_bcc.render._common import subtree_title
from proctrace_bcc.tree import Process, ProcessTree

_ESCAPE = {c: f"#{ord(c)};" for c in ':#;%<>&"'}
_TABLE = str.maketrans(_ESCAPE)


def label(text: str) -> str:
    """Task text that Mermaid's gantt parser reads back as exactly `text` (one line)."""
    return oneline(text).translate(_TABLE).strip() or "#32;"


def bars(p: Process, end: int) -> list[tuple[int, int, str]]:
    """(start, end, text) of each bar of a process: one per program image."""
    stop = p.end_time(end)
    if not p.execs:
        inherited = p.inherited_command
        return [(p.start, max(p.start, stop),
                 f"[{p.pid}] (fork) {inherited}" if inherited else f"[{p.pid}] (fork)")]
    out = []
    n = len(p.execs)
    for i, ex in enumerate(p.execs):
        s = p.start if i == 0 else ex.timestamp
        e = p.execs[i + 1].timestamp if i + 1 < n else stop
        cmd = ex.cmdline or ex.filename or "<command unavailable>"
        out.append((s, max(s, e), f"[{p.pid}] {cmd}"))
    return out


def _outcome(p: Process) -> tuple[str, str]:
    """(tag, label suffix) of a process's last bar."""
    if p.exit is None:
        return "active", " (never exited)"
    if p.failed:
        return "crit", f" ({p.status()})"
    return "done", ""


def render(rec: Recording, tree: ProcessTree) -> Iterator[str]:
    h = tree.header
    sub = subtree_title(tree)
    if sub is not None:
        title = "Process Trace of " + sub
    elif h is not None and h.command:
        title = "Process Trace of " + " ".join(h.command)
    elif tree.roots and tree.roots[0].execs:
        title = "Process Trace of " + tree.roots[0].execs[0].cmdline
    else:
        title = "Process Trace"
    yield (f"gantt\n    title {label(title)}\n    dateFormat x\n    axisFormat %S.%L\n"
           "    todayMarker off\n\n")
    base = tree.start
    out: list[str] = []
    in_exec_section = False
    for p in tree.walk():
        spans = bars(p, tree.end)
        tag, suffix = _outcome(p)
        if len(spans) > 1:
            out.append(f"    section {p.pid} execs\n")
            in_exec_section = True
        elif in_exec_section:
            out.append("    section other\n")
            in_exec_section = False
        last = len(spans) - 1
        for i, (s, e, text) in enumerate(spans):
            start_ms = max(0, s - base) // 1_000_000
            dur_ms = max(1, (e - s) // 1_000_000)
            t = tag if i == last else "done"
            out.append(f"    {label(text + (suffix if i == last else ''))} :{t}, {start_ms}, "
                       f"{dur_ms}ms\n")
        if len(out) >= 4096:
            yield "".join(out)
            out.clear()
    yield "".join(out)
