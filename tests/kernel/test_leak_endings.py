"""The hung CI job of issue 14, for real, ended every way a CI job ends.

Debian's bats on a test that backgrounds `python3 -c 'import time; time.sleep(120)'`
without closing fd 3, and the classic `( (sleep 100 &) ; echo done ) | cat`, recorded
with `record --fds` and ended by a SIGTERM to the whole group (coreutils `timeout`),
`--timeout`, `--timeout --grace 2 --kill-leftovers`, SIGKILL of the recorder and SIGINT
to the group (tests/kernel/endings.py).  Whatever the ending, the analysis names the
culprit's pid, its descriptor, the pipe and the process waiting on the read end.  The
controls (the same bats test with `3>&-`, a pipeline whose last stage outlives its
writer, a setsid daemon that points its descriptors elsewhere, `make -j`, `xargs -P`)
report no leak.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from proctrace_bcc.events import Event
from proctrace_bcc.fds import FdReport, Leak, analyze_fds
from proctrace_bcc.hang import CHILD, PIPE_READ, analyze_hang
from proctrace_bcc.read import read_recording
from proctrace_bcc.render.summary import md
from proctrace_bcc.tree import ProcessTree, build_tree
from tests.support import scaled

from .endings import CONTROL_BATS, ENDINGS, LEAK_BATS, REPO, cleaned_up, record_ending

pytestmark = pytest.mark.kernel

STDOUT_HANG = ('( (sleep 100 & echo $! > "$LEAK_PIDFILE") ; echo done ) | cat')


def _bats() -> None:
    if shutil.which("bats") is None:
        pytest.skip("bats is not installed (Debian package `bats`)")


def _analyze(path: Path, mode: str) -> str:
    p = subprocess.run([sys.executable, "-m", "proctrace_bcc", "analyze", "-i", str(path),
                        "-d", mode], capture_output=True, text=True, timeout=scaled(60),
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.returncode == 0, p.stderr
    return p.stdout


def _run(tmp_path: Path, ending: str, cmd: list[str], backend: str = "bcc"
         ) -> tuple[ProcessTree, FdReport, int | None, Path]:
    tree, culprit, out, _ = _run_events(tmp_path, ending, cmd, backend)
    return tree, analyze_fds(tree), culprit, out


def _run_events(tmp_path: Path, ending: str, cmd: list[str], backend: str
                ) -> tuple[ProcessTree, int | None, Path, list[Event]]:
    out, pidfile = tmp_path / "rec.ndjson", tmp_path / "culprit.pid"
    with cleaned_up(out, pidfile):
        record_ending(out, ending, cmd, pidfile, backend=backend)
        assert out.exists(), (tmp_path / "rec.stderr").read_text()
        rec = read_recording(out)
        assert rec.header is not None and rec.header.backend == backend
        tree = build_tree(rec.events, rec.header)
        culprit = int(pidfile.read_text()) if pidfile.exists() else None
        return tree, culprit, out, rec.events


def _leak_of(rep: FdReport, pid: int) -> Leak:
    mine = [lk for lk in rep.leaks if lk.process.pid == pid]
    assert len(mine) == 1, [(lk.process.pid, lk.process.command) for lk in rep.leaks]
    return mine[0]


@pytest.mark.parametrize("ending", ENDINGS)
def test_bats_leak_named_however_the_run_ends(tmp_path: Path, ending: str) -> None:
    _bats()
    test = tmp_path / "leak.bats"
    test.write_text(LEAK_BATS)
    tree, rep, culprit, out = _run(tmp_path, ending, ["bats", str(test)])
    assert culprit is not None, "the bats test did not run"
    if ending == "sigkill":
        assert tree.end_event is None
    lk = _leak_of(rep, culprit)
    assert lk.fds == [3] and lk.ends == ["write"] and lk.channel.kind == "pipe"
    # The pipe is the one the culprit's exec listed at fd 3, inherited, write end.
    (fd3,) = [f for f in lk.process.execs[-1].fds or [] if f.fd == 3]
    assert (fd3.kind, fd3.ino, fd3.inherited, (fd3.flags or 0) & 3) == (
        "pipe", lk.channel.ino, True, 1)
    # It came from bats-exec-test, and bats waits on the read end.
    assert lk.giver is not None and "bats-exec-test" in lk.giver.command
    assert lk.waiting, "no waiter named"
    assert all("bats" in w.process.command for w in lk.waiting), [
        w.process.command for w in lk.waiting]
    text = _analyze(out, "fds")
    assert (f" (pid {culprit}) holds fd 3, a pipe (write end, {lk.channel.name}) that bats "
            f"(pid ") in text, text
    w = lk.waiting[0].process
    assert f"bats (pid {w.pid}" in text and "waiting on the read end of " \
        f"{lk.channel.name}" in text, text
    summary = _analyze(out, "summary")
    assert f"(pid {culprit}) holds fd 3" in summary and f"bats (pid {w.pid}" in summary


@pytest.mark.parametrize("ending", ENDINGS)
def test_a_leftover_holding_the_pipe_to_cat(tmp_path: Path, ending: str) -> None:
    _, rep, culprit, out = _run(tmp_path, ending, ["bash", "-c", STDOUT_HANG])
    assert culprit is not None
    lk = _leak_of(rep, culprit)
    assert lk.process.command == "sleep 100" and lk.fds == [1] and lk.ends == ["write"]
    assert [w.process.command for w in lk.waiting] == ["cat"]
    text = _analyze(out, "fds")
    assert f"sleep 100 (pid {culprit}) holds fd 1, a pipe (write end, {lk.channel.name})" \
        in text, text
    assert f"cat (pid {lk.waiting[0].process.pid}, fd 0)" in text, text


def test_a_leftover_holding_the_recorders_own_stdout(tmp_path: Path) -> None:
    """`record --grace 2 --kill-leftovers ... | cat`: the reader is outside the recording."""
    _, rep, culprit, out = _run(tmp_path, "grace-piped", [
        "bash", "-c", 'sleep 100 & echo $! > "$LEAK_PIDFILE"; echo started'])
    assert culprit is not None
    lk = _leak_of(rep, culprit)
    assert lk.fds == [1] and lk.channel.rule == "outside" and lk.reader_outside
    assert "Its read end is outside the recording" in _analyze(out, "fds")


CONTROLS = {
    "pipeline": ["bash", "-c", "seq 1 3 | (sleep 1.5; cat)"],
    "setsid-daemon": ["bash", "-c", 'setsid sh -c "exec >/dev/null 2>&1 </dev/null; '
                      'exec sleep 30" & echo started | cat'],
    "xargs-P": ["bash", "-c", "seq 8 | xargs -P4 -I{} sleep 0.{} | cat"],
}


@pytest.mark.parametrize("name", [*CONTROLS, "make-j", "bats-3>&-"])
def test_controls_report_no_leak(tmp_path: Path, name: str) -> None:
    if name == "make-j":
        if shutil.which("make") is None:
            pytest.skip("make is not installed")
        (tmp_path / "Makefile").write_text("all: a b c d\na b c d:\n\tsleep 0.3\n")
        cmd = ["bash", "-c", f"make -C {tmp_path} -j4 | cat"]
    elif name == "bats-3>&-":
        _bats()
        (tmp_path / "ok.bats").write_text(CONTROL_BATS)
        cmd = ["bats", str(tmp_path / "ok.bats")]
    else:
        cmd = CONTROLS[name]
    _, rep, _, out = _run(tmp_path, "timeout", cmd)
    assert rep.has_data
    assert rep.leaks == [], _analyze(out, "fds")
    assert "Leaked descriptors: none" in _analyze(out, "fds")


# ---------------------------------------------------------------------------
# The hang snapshot (--timeout): who waits on what


def test_hang_snapshot_of_a_hung_bats(tmp_path: Path, backend: str) -> None:
    _bats()
    test = tmp_path / "leak.bats"
    test.write_text(LEAK_BATS)
    tree, culprit, out, events = _run_events(tmp_path, "timeout", ["bats", str(test)], backend)
    assert culprit is not None
    rep = analyze_hang(tree, events)
    assert rep is not None and rep.trigger == "timeout"
    # bats' validator is blocked reading the pipe; its only writer is the culprit.
    readers = [b for b in rep.processes if b.kind == PIPE_READ
               and any([q.pid for q in holders] == [culprit] for _, _, holders in b.pipes)]
    assert len(readers) == 1, [(b.process.pid, b.kind, b.where) for b in rep.processes]
    (reader,) = readers
    assert "bats" in reader.process.command and "pipe_read" in reader.where
    (name, _fds, _w) = next(p for p in reader.pipes if [q.pid for q in p[2]] == [culprit])
    text = _analyze(out, "fds")
    assert (f"bats (pid {reader.process.pid}) is blocked in {reader.where} on {name}; its only "
            f"writer still open is python3 (pid {culprit}).") in text, text
    assert md(f"is blocked in {reader.where} on {name}") in _analyze(out, "summary")


MAKEFILE = """\
all: a
a:
\tpython3 -c 'import threading; threading.Event().wait()'
"""


def test_hang_snapshot_of_a_hung_make(tmp_path: Path, backend: str) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    (tmp_path / "Makefile").write_text(MAKEFILE)
    tree, _, out, events = _run_events(tmp_path, "timeout", ["make", "-C", str(tmp_path)],
                                       backend)
    rep = analyze_hang(tree, events)
    assert rep is not None
    (mk,) = [b for b in rep.processes if b.process.command.startswith("make")]
    assert mk.kind == CHILD and mk.children, (mk.kind, mk.where)
    # make waits for its job, which (through sh, when there is one) waits on a futex.
    chain = [b for _, b in rep.chains]
    assert any("futex" in b.where for b in chain), [(b.process.command, b.where) for b in chain]
    text = _analyze(out, "fds")
    assert f"make (pid {mk.process.pid}) is blocked in {mk.where} for " in text, text
