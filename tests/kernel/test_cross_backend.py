"""The same deterministic script recorded by every backend gives the same tree.

Compared: the parent/child shape, every exec (argv, filename, interpreter),
failed execs, exit statuses, and process-group and session changes (as
"which process of the tree" rather than pid numbers).  Pids and timestamps
differ from run to run and are ignored.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from proctrace_bcc.tree import Process

from .conftest import BACKENDS, Result, run_record

pytestmark = pytest.mark.kernel

# Sequential on purpose (pipelines aside, whose elements the shell forks in order),
# so that sibling order is the same in every run.
SCRIPT = r"""
cd "$1"
./inner.sh "a b" ''
sh -c 'exit 7'
sh -c 'kill -TERM $$'
sh -c 'exec nosuchcmd-xyz' 2>/dev/null
bash -c 'echo hi | tr a-z A-Z | wc -c' >/dev/null
setsid sh -c 'exit 0'
bash -c 'set -m; sleep 0.01 & wait'
sh -c 'exec env true'
/bin/echo "$(seq 1 300)" 'two words' '' >/dev/null
exit 0
"""


def shape(r: Result) -> list[tuple[object, ...]]:
    """The tree as comparable data: one row per process in depth-first fork order."""
    rows: list[tuple[object, ...]] = []
    label: dict[int, str] = {}

    def walk(p: Process, path: str) -> None:
        label[p.pid] = path
        kids = sorted(p.children, key=lambda c: c.fork_time or c.start)
        for i, c in enumerate(kids):
            walk(c, f"{path}.{i}")

    walk(r.root, "0")

    def name(pid: int | None) -> str:
        return "outside" if pid is None else label.get(pid, "outside")

    def rows_of(p: Process) -> None:
        rows.append((
            label[p.pid],
            [(tuple(e.argv or []), e.filename, tuple(e.interpreter or ()), e.truncated)
             for e in p.execs],
            [(f.filename, f.errno) for f in p.failed_execs],
            p.status(),
            [name(g) for _, g in p.pgid_history],
            [name(s) for _, s in p.sid_history],
        ))
        for c in sorted(p.children, key=lambda c: c.fork_time or c.start):
            rows_of(c)

    rows_of(r.root)
    return rows


@pytest.mark.skipif(len(BACKENDS) < 2, reason="one backend only")
def test_every_backend_records_the_same_tree(tmp_path: Path) -> None:
    inner = tmp_path / "inner.sh"
    inner.write_text("#!/bin/sh\nexit 3\n")
    inner.chmod(0o755)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C"}
    shapes = {}
    for backend in BACKENDS:
        r = run_record(tmp_path, backend, ["sh", "-c", SCRIPT, "sh", str(tmp_path)], env=env)
        assert r.rc == 0, r.stderr
        assert r.rec.end is not None and r.rec.end.reason == "exited" and r.rec.end.lost == 0
        shapes[backend] = shape(r)
    first, *others = BACKENDS
    base = shapes[first]
    # the script's own content, so that equal trees mean something
    execs = [e for row in base for e in row[1]]  # type: ignore[attr-defined]
    argvs = [e[0] for e in execs]
    assert ("./inner.sh", "a b", "") in argvs and ("env", "true") in argvs
    assert any(e[2] == ("/bin/sh",) for e in execs)
    assert {row[3] for row in base} >= {"exit 0", "exit 3", "exit 7", "exit 127", "SIGTERM"}
    assert any(row[2] for row in base)  # failed execs along PATH
    assert len(base) >= 15
    for other in others:
        assert shapes[other] == base, f"{other} differs from {first}"
