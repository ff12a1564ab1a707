"""`analyze -d summary`: a short Markdown report for a CI page ($GITHUB_STEP_SUMMARY,
a GitLab job report): outcome, duration, processes, failed processes, leaked
descriptors with culprit and waiter, the hang snapshot's waiting chain, lost events,
and how to open the full HTML report.

The findings are the ones of `analyze -d fds` (:func:`proctrace_bcc.fds.analyze_fds`)
and of the hang snapshot (:func:`proctrace_bcc.hang.analyze_hang`), worded with the
same process names (:mod:`proctrace_bcc.render.fds`).  Everything that came from the
recording is escaped for Markdown and HTML, control characters as ``\\xNN``.  The
length is bounded whatever the recording's size: at most FAILED_MAX failed
processes, LEAKS_MAX leaks, HANG_MAX lines of the waiting chain, each line at most
LINE_MAX characters.
"""

from __future__ import annotations

import html
import os
import re
import signal
from collections.abc import Iterator, Sequence

from proctrace_bcc.fds import Line, analyze_fds, leak_sentences, rel_time
from proctrace_bcc.hang import analyze_hang, hang_sentences, heading
from proctrace_bcc.read import Recording
from proctrace_bcc.render import fmt_duration, oneline, shell_argv, shell_word
from proctrace_bcc.render._common import (
    NONZERO,
    SIGNALED,
    outcome,
    quoted_argv,
    subtree_title,
    tree_rows,
)
from proctrace_bcc.render.fds import words
from proctrace_bcc.tree import Process, ProcessTree

FAILED_MAX = 10
LEAKS_MAX = 5
HANG_MAX = 20
LINE_MAX = 600  # characters of one line from the recording, before escaping

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]|~!])")
_MD_LEADING = re.compile(r"^(\d*)([-+#>=.)])")  # a list, heading, quote or setext line
_END_WORDS = {"exited": "finished", "timeout": "stopped by --timeout",
              "grace": "stopped after --grace", "interrupted": "interrupted (SIGINT)",
              "terminated": "terminated (SIGTERM/SIGHUP)", "error": "stopped by an error",
              "write_error": "cut short: the recording could not be written on"}


def md(s: str) -> str:
    """Text from the recording, safe in Markdown and HTML: one line, controls as \\xNN,
    cut to LINE_MAX, HTML specials as entities, Markdown punctuation backslashed."""
    s = oneline(s)
    if len(s) > LINE_MAX:
        s = s[:LINE_MAX - 1] + "…"
    s = _MD_SPECIAL.sub(r"\\\1", html.escape(s, quote=False))
    return _MD_LEADING.sub(r"\1\\\2", s, count=1)


def code(s: str) -> str:
    """Text from the recording as an inline code span (cut, controls as \\xNN): nothing
    is interpreted inside one, HTML included; its fence is longer than any run of
    backticks in it."""
    s = oneline(s)
    if len(s) > LINE_MAX:
        s = s[:LINE_MAX - 1] + "…"
    run = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (run + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or run else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _line(line: Line) -> str:
    return md("".join(words(g) for g in line))


def _status(p: Process) -> str:
    e = p.exit
    if e is None:
        return "still running"
    if e.signal is not None:
        try:
            return f"killed by {signal.Signals(e.signal).name}"
        except ValueError:
            return f"killed by signal {e.signal}"
    return f"exit status {e.exit_code}"


def _argv(p: Process) -> str:
    if p.execs:
        return quoted_argv(p.execs[-1])
    return p.command or f"<pid {p.pid}>"


def _outcome(rec: Recording, tree: ProcessTree) -> str:
    end = tree.end_event
    if end is None:
        return ("the recording stops without an End event (the recorder was killed, "
                "or is still running)")
    said = _END_WORDS.get(str(end.reason), md(str(end.reason)))
    if end.exit_status is not None:
        said += f", exit status {end.exit_status}"
    return said


def _failed(rows: Sequence[Process]) -> list[Process]:
    return [p for p in rows if outcome(p) in (NONZERO, SIGNALED)]


def summary_lines(rec: Recording, tree: ProcessTree) -> Iterator[str]:
    t0 = tree.start
    rows = tree_rows(tree)
    h = tree.header
    cmd = subtree_title(tree) or (shell_argv(h.command) if h and h.command else "")
    failed = _failed(rows)
    running = [p for p in rows if p.exit is None]
    yield f"## proctrace-bcc: {code(cmd) if cmd else 'recording'}"
    yield ""
    yield f"- **Outcome:** {_outcome(rec, tree)}"
    yield f"- **Duration:** {fmt_duration(tree.end - t0)}"
    yield (f"- **Processes:** {len(rows)} ({len(failed)} failed, {len(running)} still running "
           "at the end)")
    yield f"- **Lost events:** {tree.lost}" + (
        " (the tree may miss processes; see the HTML report)" if tree.lost else "")
    if failed:
        yield ""
        shown = failed[:FAILED_MAX]
        more = f" (first {len(shown)} of {len(failed)})" if len(failed) > len(shown) else ""
        yield f"### Failed processes{more}"
        yield ""
        for p in shown:
            yield (f"- {code(_argv(p))} (pid {p.pid}, {rel_time(p.start, t0)}): {_status(p)}")
    rep = analyze_fds(tree)
    if rep.has_data:
        yield ""
        if rep.leaks:
            shown_l = rep.leaks[:LEAKS_MAX]
            more = (f" (first {len(shown_l)} of {len(rep.leaks)})"
                    if len(rep.leaks) > len(shown_l) else "")
            yield f"### Leaked descriptors: {len(rep.leaks)}{more}"
            for lk in shown_l:
                first, *rest = leak_sentences(lk, t0)
                yield ""
                yield f"- {_line(first)}"
                for line in rest:
                    yield f"  - {_line(line)}"
        else:
            yield "### Leaked descriptors: none"
    hang = analyze_hang(tree, rec.events)
    if hang is not None:
        yield ""
        yield f"### {md(heading(hang, t0))}"
        yield ""
        lines = hang_sentences(hang, HANG_MAX)
        for depth, line in lines:
            yield f"{'  ' * min(depth, 8)}- {_line(line)}"
        if len(hang.chains) > len(lines):
            yield f"- … and {len(hang.chains) - len(lines)} more processes (see the HTML report)"
    yield ""
    name = os.path.basename(rec.path) if rec.path not in ("", "-") else "RECORDING.ndjson"
    how = f"proctrace-bcc analyze -i {shell_word(name)} -d html -o report.html"
    yield (f"Full report: run {code(how)} and open report.html in a browser (the CI job "
           "uploads both as artifacts).")


def render(rec: Recording, tree: ProcessTree) -> Iterator[str]:
    for line in summary_lines(rec, tree):
        yield line + "\n"


__all__ = ["code", "md", "render", "summary_lines"]
