"""Short names of processes, as a person would say them (one rule for every mode).

``bash /usr/libexec/bats-core/bats x.bats`` is ``bats x.bats``; ``env A=1 make`` is
``make``; ``python3 -m pytest -q`` is ``pytest -q``; ``bash -c CMD`` stays; bats'
helpers name their file and test: ``bats-exec-test leak.bats 'starts a server'``,
``bats-exec-suite a.bats (+17 more)``, ``bats-preprocess a.bats``.
A process that never exec'd is named by the program it inherited (its parent's).
The fds report, the tree's fork lines and the HTML report's rows use these.
"""

from __future__ import annotations

import os
import re

from proctrace_bcc.attribution import bats_description
from proctrace_bcc.render import oneline, shell_word
from proctrace_bcc.tree import ExecSpan, Process

LABEL_MAX = 60

_INTERPRETERS = re.compile(
    r"^(?:sh|bash|dash|zsh|ksh|mksh|ash|fish|perl[0-9.]*|ruby[0-9.]*|node|nodejs|"
    r"python[0-9.]*|pypy[0-9.]*|tclsh[0-9.]*|lua[0-9.]*|php[0-9.]*)$")
_ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def image(p: Process, t: int | None = None) -> ExecSpan | None:
    """The program image `p` runs at time t (default: its last): its exec, else its parent's."""
    q: Process | None = p
    while q is not None:
        spans = [e for e in q.execs if t is None or e.timestamp <= t]
        if spans:
            return spans[-1]
        t, q = q.start, q.parent
    return None


def _bats_args(prog: str, args: list[str]) -> list[str]:
    """bats' helpers' arguments that tell their runs apart: the .bats file (base name;
    the first and how many more, for the suite's list) and, for bats-exec-test, the
    test's name."""
    args = [a for a in args if not a.startswith("-")]
    files = [os.path.basename(a) for a in args if a.endswith(".bats")]
    if prog == "bats-exec-test" and len(args) > 1:
        return [*files[:1], shell_word(bats_description(args[1]))]
    if len(files) > 1:
        return [files[0], f"(+{len(files) - 1} more)"]
    return files


def program_words(p: Process, t: int | None = None) -> tuple[str, list[str]]:
    """(program name, its arguments) of what `p` runs at time t (default: last)."""
    img = image(p, t)
    if img is None:
        return (p.command or f"<pid {p.pid}>"), []
    argv = list(img.argv) if img.argv else img.cmdline.split(" ")
    if not argv:
        return img.cmdline or f"<pid {p.pid}>", []
    for _ in range(3):
        base = os.path.basename(argv[0])
        if base == "env":
            rest = argv[1:]
            while rest and (rest[0].startswith("-") or _ENV_ASSIGN.match(rest[0])):
                rest = rest[1:]
            if not rest:
                break
            argv = rest
            continue
        if _INTERPRETERS.match(base) and len(argv) > 1:
            if not argv[1].startswith("-"):
                argv = argv[1:]
            elif base.startswith(("python", "pypy")) and argv[1] == "-m" and len(argv) > 2:
                argv = argv[2:]
        break
    prog = os.path.basename(argv[0]) or argv[0]
    if prog.startswith("bats-"):
        return prog, _bats_args(prog, argv[1:])
    return prog, argv[1:]


def name(p: Process) -> str:
    """The program's short name: ``sleep``, ``bats``, ``bats-exec-test``."""
    return oneline(program_words(p)[0])


def label(p: Process, limit: int = LABEL_MAX) -> str:
    """The short name and arguments, at most `limit` characters: ``sleep 300``."""
    prog, args = program_words(p)
    s = oneline(" ".join([prog, *args]))
    return s if len(s) <= limit else s[:limit - 1] + "…"
