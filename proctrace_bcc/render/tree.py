"""`analyze -d tree`: the process tree in the terminal, like `pstree`, with outcomes.

One line per process, children in fork order under their parent (the process that
forked them, even if they were reparented later)::

    1000 bash ci.sh  (2.31 s, exit 2 ✗)  [pgid 1000, sid 999]
    ├─ 1001 make test  (2.30 s, exit 2 ✗)
    │  ├─ 1002 cc -c a.c  (120 ms, exit 0)
    │  └─ 1003 sleep 1000  (≥ 1.50 s, never exited ⧗)  [pgid 1003]
    └─ 1004 (fork of ci.sh)  (3.0 ms, SIGKILL ✗)

The command is the last program the process ran (``via env, bash`` names earlier
ones); ``(fork of ci.sh)`` marks a process that never exec'd (named by the program it
inherited, render.names), ``(fork)`` one whose parent's program is unknown.  On a
terminal each command is cut so that its line fits the width (``analyze --wide``
keeps them whole); elsewhere (a file, a pipe) lines are whole.  ``[pgid N]`` / ``[sid N]``
appear when a process's final group or session differs from its parent's at fork.
A test's first process (proctrace_bcc.attribution: its ``bats-exec-test``, or the first
process a pytest test started) has a line ``▶ test 'name' (file, test N)`` above it.
A summary comes first; failed and never-exited processes are listed again at the end.
Colours (failed red, never exited yellow) only when writing to a terminal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from proctrace_bcc.attribution import attribute
from proctrace_bcc.read import Recording, unfinished
from proctrace_bcc.render import errno_name, fmt_duration, oneline
from proctrace_bcc.render._common import exit_lost, quoted_argv, subtree_title
from proctrace_bcc.render.names import image
from proctrace_bcc.render.names import name as short_name
from proctrace_bcc.render.tests import test_words
from proctrace_bcc.tree import Process, ProcessTree

LIST_MAX = 10  # failed / never-exited processes listed at the end
FOLD = 64  # levels of indentation shown before it starts again
CMD_MIN = 12  # characters of a command kept when lines are fitted to a terminal
_SGR = re.compile(r"\x1b\[[0-9;]*m")

_RED, _YELLOW, _DIM, _BOLD, _RESET = "\x1b[31m", "\x1b[33m", "\x1b[2m", "\x1b[1m", "\x1b[0m"


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.color else text


def _program(p_exec_filename: str | None, argv: list[str] | None, cmdline: str) -> str:
    src = oneline(p_exec_filename or (argv[0] if argv else "") or cmdline.split(" ", 1)[0])
    return src.rsplit("/", 1)[-1] or src


def command(p: Process) -> str:
    """The command shown for a process (one line)."""
    if not p.execs:
        if p.inherited_command and image(p) is not None:
            return f"(fork of {short_name(p)})"
        if p.inherited_command:
            return "(fork)"
        return "(started before the recording)" if p.fork_time is None else "(fork)"
    last = p.execs[-1]
    cmd = (quoted_argv(last) if last.argv or last.cmdline
           else oneline(last.filename or "") or "?")
    if last.truncated:
        cmd += " …"
    if len(p.execs) > 1:
        via: list[str] = []
        for e in p.execs[:-1]:
            name = _program(e.filename, e.argv, e.cmdline)
            if not via or via[-1] != name:
                via.append(name)
        cmd += f"  (via {', '.join(via)})"
    return cmd


def _value_at(history: list[tuple[int, int]], t: int) -> int | None:
    v = None
    for ts, x in history:
        if ts > t:
            break
        v = x
    return v


def _groups(p: Process, legacy: bool, is_root: bool) -> str:
    if legacy:
        return ""
    parts = []
    par = p.parent
    h, sh = p.pgid_history, p.sid_history
    pgid = h[-1][1] if h else None
    sid = sh[-1][1] if sh else None
    if par is not None and not is_root and len(h) <= 1 and len(sh) <= 1:
        # Common case: group and session set once at fork, as the parent's.
        ph, psh = par.pgid_history, par.sid_history
        if ((pgid is None or (len(ph) == 1 and ph[0][1] == pgid))
                and (sid is None or (len(psh) == 1 and psh[0][1] == sid))):
            return ""
    if par is None or is_root:
        if pgid is not None:
            parts.append(f"pgid {pgid}")
        if sid is not None:
            parts.append(f"sid {sid}")
    else:
        if pgid is not None and pgid != _value_at(par.pgid_history, p.start):
            parts.append(f"pgid {pgid}")
        if sid is not None and sid != _value_at(par.sid_history, p.start):
            parts.append(f"sid {sid}")
    return f"  [{', '.join(parts)}]" if parts else ""


def _failed_execs(p: Process) -> str:
    if not p.failed_execs:
        return ""
    after = p.execs[-1].timestamp if p.execs else -1
    failed = [f for f in p.failed_execs if f.timestamp > after]
    if not failed:
        return ""
    f = failed[-1]
    more = f" +{len(failed) - 1}" if len(failed) > 1 else ""
    name = oneline(f.filename) if f.filename else "?"
    return f"  exec failed: {name} ({errno_name(f.errno)}){more}"


def _preexisting(p: Process) -> bool:
    """Known only as a parent, started before the recording and still there."""
    return p.fork_time is None and p.exit is None and not p.execs


def outcome(p: Process, tree: ProcessTree, st: _Style) -> str:
    dur = fmt_duration(p.duration(tree.end))
    if _preexisting(p):
        return f"(≥ {dur}, running)"
    if p.exit is None:
        if exit_lost(p, tree):
            return f"(≥ {dur}, {st(_YELLOW, 'exit not recorded ?')})"
        return f"(≥ {dur}, {st(_YELLOW, 'never exited ⧗')})"
    status = p.status()
    if p.failed:
        return f"({dur}, {st(_RED, status + ' ✗')})"
    return f"({dur}, {status})"


def visible_len(s: str) -> int:
    """Columns `s` takes on a terminal (colour codes take none)."""
    return len(_SGR.sub("", s))


def line(p: Process, tree: ProcessTree, st: _Style, legacy: bool, is_root: bool = False,
         room: int | None = None) -> str:
    """One process's line; with `room` (columns left after the indentation) its command
    is cut to fit (never below CMD_MIN characters: the outcome stays readable)."""
    pid = st(_BOLD, str(p.pid)) if st.color else p.pid
    rest = f"  {outcome(p, tree, st)}{_groups(p, legacy, is_root)}{_failed_execs(p)}"
    cmd = command(p)
    if room is not None:
        fit = max(CMD_MIN, room - len(str(p.pid)) - 1 - visible_len(rest))
        if len(cmd) > fit:
            cmd = cmd[:fit - 1] + "…"
    return f"{pid} {cmd}{rest}"


def _summary(rec: Recording, tree: ProcessTree, st: _Style) -> Iterator[str]:
    procs = tree.processes
    failed = sum(1 for p in procs if p.failed)
    running = sum(1 for p in procs if p.exit is None and not _preexisting(p))
    h = tree.header
    what = ""
    sub = subtree_title(tree)
    if sub is not None:
        what = " of " + sub
    elif h is not None and h.raw and len(tree.roots) != 1:
        what = " of a system-wide recording"
    elif h is not None and h.command:
        what = " of " + oneline(" ".join(h.command))
    elif tree.roots and tree.roots[0].execs:
        what = " of " + oneline(tree.roots[0].execs[0].cmdline)
    parts = [f"{len(procs):,} process{'es' if len(procs) != 1 else ''}"]
    parts.append(st(_RED, f"{failed:,} failed") if failed else "0 failed")
    if running:
        parts.append(st(_YELLOW, f"{running:,} never exited"))
    parts.append(fmt_duration(max(0, tree.end - tree.start)))
    yield f"proctrace-bcc tree{what}: {', '.join(parts)}\n"
    if tree.end_event is not None:
        e = tree.end_event
        yield f"recording ended: {oneline(e.reason)}\n"
    else:
        w = unfinished(h, rec.legacy, tree.start, tree.end)
        if w is not None:
            yield st(_YELLOW, f"warning: {w}") + "\n"
    if tree.lost:
        yield st(_YELLOW, f"warning: {tree.lost:,} events were lost; the tree may be "
                 "incomplete") + "\n"
    if rec.legacy:
        yield ("note: recording of the original proctrace: no exit status and no process "
               "groups were recorded\n")
    yield "\n"


def render(rec: Recording, tree: ProcessTree, *, color: bool = False,
           width: int | None = None) -> Iterator[str]:
    """The tree; with `width` (a terminal's), each command cut so its line fits."""
    st = _Style(color)
    legacy = rec.legacy
    yield from _summary(rec, tree, st)
    branch_mid = st(_DIM, "├─ ")
    branch_last = st(_DIM, "└─ ")
    pipe = st(_DIM, "│  ")
    out: list[str] = []
    starts = {t.processes[0]: t for t in attribute(tree).tests}  # where each test starts
    # Iterative depth-first walk: trees can be deeper than Python's recursion limit.
    # Every FOLD levels the indentation starts again (output linear in the depth).
    stack: list[tuple[Process, str, str, int]] = [(r, "", "", 0)
                                                  for r in reversed(tree.roots)]
    while stack:
        p, prefix, branch, depth = stack.pop()
        if depth and depth % FOLD == 0 and branch:
            out.append(f"{prefix}{st(_DIM, f'⋮ {depth} levels deep: indentation folded')}\n")
            prefix = ""
        room = None if width is None else width - 1 - visible_len(prefix + branch)
        test = starts.get(p)
        if test is not None:
            out.append(f"{prefix}{st(_BOLD, '▶ ' + test_words(test))}\n")
        out.append(f"{prefix}{branch}{line(p, tree, st, legacy, not branch, room)}\n")
        if len(out) >= 4096:
            yield "".join(out)
            out.clear()
        kids = p.children
        if not kids:
            continue
        child_prefix = prefix + ("" if not branch else ("   " if branch is branch_last
                                                       else pipe))
        n = len(kids)
        for i in range(n - 1, -1, -1):
            stack.append((kids[i], child_prefix, branch_last if i == n - 1 else branch_mid,
                          depth + 1))
    yield "".join(out)
    yield from _lists(tree, st)


def _lists(tree: ProcessTree, st: _Style) -> Iterator[str]:
    failed = [p for p in tree.processes if p.failed]
    running = [p for p in tree.processes if p.exit is None and not _preexisting(p)]
    for title, procs, code in (("failed", failed, _RED), ("never exited", running, _YELLOW)):
        if not procs:
            continue
        yield f"\n{st(code, title)} ({len(procs):,}):\n"
        for p in procs[:LIST_MAX]:
            status = (("exit not recorded" if exit_lost(p, tree) else "running at end")
                      if p.exit is None else p.status())
            yield f"  {p.pid} {command(p)}  ({status})\n"
        if len(procs) > LIST_MAX:
            yield f"  … and {len(procs) - LIST_MAX:,} more\n"
