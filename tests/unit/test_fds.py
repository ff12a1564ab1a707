"""Descriptor analysis (proctrace_bcc.fds) and `analyze -d fds` on hand-built recordings.

The recordings mimic what `record --fds` writes: FdInfo lists on Exec events (after
the exec, `inherited` = same open file at the same fd number as at fork) and
FdSnapshot events (from /proc, full readlink paths, no `inherited`) just before End
for the processes still alive.  `bats_events` follows the structure of a real
recording of Debian's bats 1.8.2 with a test that backgrounds `sleep 300`.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from proctrace_bcc.analyze import analyze
from proctrace_bcc.events import (
    End,
    Event,
    Exec,
    Exit,
    FdInfo,
    FdSnapshot,
    Fork,
    Header,
)
from proctrace_bcc.fds import (
    LONG_MIN_NS,
    FdReport,
    Ref,
    TestRef,
    analyze_fds,
    common_ancestor,
    leak_sentences,
    opener_sentence,
)
from proctrace_bcc.read import read_recording
from proctrace_bcc.render import fds as render_fds
from proctrace_bcc.render.registry import MODES
from proctrace_bcc.render.registry import module as renderer
from proctrace_bcc.tree import ProcessTree, build_tree
from proctrace_bcc.writer import RecordingWriter

MS = 1_000_000
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "fds"
PIPE_DEV = os.makedev(0, 14)
SOCK_DEV = os.makedev(0, 8)
DISK = os.makedev(254, 1)
O_RDONLY, O_WRONLY, O_RDWR, O_APPEND = 0, 1, 2, 0o2000


def pipe_r(fd: int, ino: int, inherited: bool | None = True) -> FdInfo:
    return FdInfo(fd, "pipe", PIPE_DEV, ino, None, inherited, O_RDONLY)


def pipe_w(fd: int, ino: int, inherited: bool | None = True) -> FdInfo:
    return FdInfo(fd, "pipe", PIPE_DEV, ino, None, inherited, O_WRONLY)


def sock(fd: int, ino: int, inherited: bool | None = True) -> FdInfo:
    return FdInfo(fd, "socket", SOCK_DEV, ino, None, inherited, O_RDWR)


def file_(fd: int, ino: int, name: str, inherited: bool | None = True) -> FdInfo:
    return FdInfo(fd, "file", DISK, ino, name, inherited, O_WRONLY | O_APPEND)


def devnull(fd: int = 0, inherited: bool | None = True) -> FdInfo:
    return FdInfo(fd, "char", os.makedev(0, 5), 3, None, inherited, O_RDONLY)


def snap(fds: list[FdInfo]) -> list[FdInfo]:
    """The /proc form of exec-time FdInfo: readlink paths, inherited unknown."""
    out = []
    for f in fds:
        path = f"{f.kind}:[{f.ino}]" if f.kind in ("pipe", "socket") else (
            "/dev/null" if f.kind == "char" else f"/tmp/run/{f.path}")
        out.append(FdInfo(f.fd, f.kind, f.dev, f.ino, path, None, f.flags))
    return out


class Script:
    """A recording under construction: a clock, and helpers that append events."""

    def __init__(self, root: int = 100) -> None:
        self.t = 0
        self.root = root
        self.events: list[Event] = []
        self.pgid = root

    def tick(self, ms: float = 1) -> int:
        self.t += int(ms * MS)
        return self.t

    def fork(self, parent: int, child: int) -> None:
        self.events.append(Fork(self.tick(), parent, child, self.pgid, self.pgid, 1))

    def exec(self, pid: int, ppid: int, argv: list[str], fds: list[FdInfo] | None,
             ms: float = 1) -> None:
        self.events.append(Exec.from_argv(self.tick(ms), pid, ppid, self.pgid, argv,
                                          filename="/usr/bin/" + os.path.basename(argv[0]),
                                          fds=fds))

    def exit(self, pid: int, ppid: int, code: int = 0, ms: float = 1) -> None:
        self.events.append(Exit(self.tick(ms), pid, ppid, self.pgid, exit_code=code))

    def snapshot(self, pid: int, fds: list[FdInfo]) -> None:
        self.events.append(FdSnapshot(self.t, pid, fds))

    def end(self, reason: str, running: list[int], ms: float = 1) -> None:
        self.events.append(End(self.tick(ms), reason, running, None, 0))

    def header(self, command: list[str]) -> Header:
        return Header(version="0.1.0", backend="bcc", kernel="6.18.0", hostname="ci",
                      command=command, root_pid=self.root, start_time="2026-01-01T00:00:00Z",
                      options={"fds": True})


def roundtrip(tmp_path: Path, s: Script, command: list[str]) -> tuple[Path, ProcessTree]:
    """Write the script's recording to disk and read it back, as `analyze` would."""
    path = tmp_path / "rec.ndjson"
    w = RecordingWriter(path)
    w.write_header(s.header(command))
    for ev in s.events:
        w.write(ev)
    w.close()
    rec = read_recording(path)
    return path, build_tree(rec.events, rec.header)


P1, P2, P3 = 94450, 94451, 94449  # bats' output pipe, the formatter's pipe, a $(...) pipe
OUT = 2212427  # the test's output file (bats.N.out)
STD = [devnull(0), file_(1, 11, "stdout"), file_(2, 12, "stderr")]


def bats_events(close_fd3: bool) -> Script:
    """bats runs one test that backgrounds `sleep 300` (with `3>&-` when close_fd3).

    100 bats (root: bash /usr/libexec/bats-core/bats t.bats)
      101 mktemp                    $(...) pipe P3 on fd 1
      102 bats-exec-suite           fd 1 = P1 (write end; dup2'd after fork)
        103 bats-exec-test          fds 1, 3 = P1 (exec 3<&1 in its parent)
          104 sleep 300             fd 3 = P1 unless closed; fd 4 = the output file
      105 bats (validator subshell: never execs; reads P1 on fd 0, writes P2 on fd 1)
      106 bats-format-cat           reads P2 on fd 0
    """
    s = Script(100)
    s.events.append(Fork(0, 50, 100, 50, 100, 1))
    s.exec(100, 50, ["bats", "t.bats"], STD)
    s.exec(100, 50, ["bash", "/usr/libexec/bats-core/bats", "t.bats"], STD)
    s.fork(100, 101)
    s.exec(101, 100, ["mktemp", "-d", "/tmp/bats-run-XXXXXX"],
           [devnull(0), pipe_w(1, P3, inherited=False), STD[2]])
    s.exit(101, 100)
    s.fork(100, 102)
    s.fork(100, 105)
    s.fork(100, 106)
    s.exec(102, 100, ["bash", "/usr/libexec/bats-core/bats-exec-suite", "t.bats"],
           [devnull(0), pipe_w(1, P1, inherited=False), STD[2]])
    s.exec(106, 100, ["bash", "/usr/libexec/bats-core/bats-format-cat"],
           [pipe_r(0, P2, inherited=False), STD[1], STD[2]])
    s.fork(102, 103)
    s.exec(103, 102, ["bash", "/usr/libexec/bats-core/bats-exec-test", "t.bats", "test_1"],
           [devnull(0), pipe_w(1, P1), STD[2], pipe_w(3, P1)])
    s.fork(103, 104)
    out = [file_(1, OUT, "bats.103.out"), file_(2, OUT, "bats.103.out")]
    sleep_fds = [devnull(0, inherited=False), *out]
    if not close_fd3:
        sleep_fds.append(pipe_w(3, P1))
    sleep_fds.append(file_(4, OUT, "bats.103.out"))
    s.exec(104, 103, ["sleep", "300"], sleep_fds)
    s.exit(103, 102, ms=5)
    s.exit(102, 100)
    s.tick(4000)
    if close_fd3:
        # Nothing holds the write end any more: the pipeline drains and bats ends;
        # only the sleep is left when the timeout hits.
        s.exit(105, 100)
        s.exit(106, 100)
        s.exit(100, 50)
        s.snapshot(104, snap(sleep_fds))
        s.end("timeout", [104])
    else:
        s.snapshot(100, snap([*STD, file_(255, 77, "bats", inherited=None)]))
        s.snapshot(104, snap(sleep_fds))
        s.snapshot(105, snap([pipe_r(0, P1), pipe_w(1, P2), STD[2]]))
        s.snapshot(106, snap([pipe_r(0, P2), STD[1], STD[2]]))
        s.end("timeout", [100, 104, 105, 106])
    return s


def pids(procs: list[object]) -> list[int]:
    return [p.pid for p in procs]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------
# The bats hang


def test_bats_leak_names_the_sleep_fd3_the_pipe_and_the_waiting_bats(tmp_path: Path) -> None:
    _, tree = roundtrip(tmp_path, bats_events(close_fd3=False), ["bats", "t.bats"])
    rep = analyze_fds(tree)
    assert len(rep.leaks) == 1
    lk = rep.leaks[0]
    assert lk.process.pid == 104 and lk.fds == [3] and lk.ends == ["write"]
    assert lk.channel.name == f"pipe:[{P1}]"
    assert lk.source.pid == 100 and lk.channel.rule == "ancestor"
    assert [(q.pid, fds) for q, fds in lk.chain] == [(102, [1]), (103, [1, 3])]
    assert lk.alive
    assert pids([w.process for w in lk.waiting]) == [105]
    assert lk.waiting[0].fds == [0]
    ((down, readers),) = lk.waiting[0].downstream
    assert down.name == f"pipe:[{P2}]" and pids([r.process for r in readers]) == [106]
    assert lk.others == []

    text = "".join(render_fds.render(read_recording(tmp_path / "rec.ndjson"), tree))
    first = text.split("Leaked descriptors: 1\n\n", 1)[1].splitlines()
    assert first[0] == (
        f"sleep 300 (pid 104) holds fd 3, a pipe (write end, pipe:[{P1}]) that bats (pid 100) "
        "opened; it inherited it through bats-exec-suite (pid 102, fd 1) and bats-exec-test "
        "(pid 103, fds 1, 3).")
    # It held it 4 s after bats-exec-test, which it inherited it from, had exited.
    assert first[1] == ("    sleep was still holding it when the recording ended, 4.00 s after "
                        "bats-exec-test (pid 103), which it inherited it from, had exited at "
                        "+0.019s.")
    assert lk.giver is not None and lk.giver.pid == 103 and lk.held_after == 4_002 * MS
    assert first[2] == f"    bats (pid 105, fd 0) is still waiting on the read end of pipe:[{P1}]."
    assert first[3] == ("    bats-format-cat (pid 106, fd 0) waits in turn on the output of "
                        f"bats (pid 105, pipe:[{P2}]).")


def test_findings_name_processes_by_reference(tmp_path: Path) -> None:
    """The sentences hold the processes they name (worded by each renderer), not their words."""
    _, tree = roundtrip(tmp_path, bats_events(close_fd3=False), ["bats", "t.bats"])
    (lk,) = analyze_fds(tree).leaks
    head, running, waiting, in_turn, test = leak_sentences(lk, tree.start)
    assert isinstance(test[0], TestRef) and test[0].test.identity.name == "test_1"  # who leaked
    refs = [g for g in head if isinstance(g, Ref)]
    assert [(r.process.pid, r.fds, r.full) for r in refs] == [
        (104, (), True), (100, (), False), (102, (1,), False), (103, (1, 3), False)]
    assert all(r.key == (r.process.pid, r.process.start) for r in refs)
    assert refs[1].at == tree.find(102)[0].start  # the opener as it was when it forked
    assert next(g for g in head if isinstance(g, str)) == (
        f" holds fd 3, a pipe (write end, pipe:[{P1}]) that ")
    assert running == [Ref(lk.process, bare=True),
                       " was still holding it when the recording ended, 4.00 s after ",
                       Ref(tree.find(103)[0]), ", which it inherited it from, had exited at "
                       "+0.019s."]
    assert [g.process.pid for g in waiting if isinstance(g, Ref)] == [105]
    assert in_turn[-2:] == [Ref(tree.find(105)[0], note=f"pipe:[{P2}]"), "."]
    assert render_fds.text(in_turn) == (f"bats-format-cat (pid 106, fd 0) waits in turn on the "
                                        f"output of bats (pid 105, pipe:[{P2}]).")
    assert [(r.process.pid, r.fds) for r in lk.path()] == [
        (100, ()), (102, (1,)), (103, (1, 3)), (104, (3,))]
    assert [(ch.ino, w.process.pid) for ch, w in lk.waiters()] == [(P1, 105), (P2, 106)]
    opener = opener_sentence(lk.channel)
    assert opener[0] == "opened by " and isinstance(opener[1], Ref)
    assert opener[1].process.pid == 100


def test_bats_leak_from_end_snapshots_only(tmp_path: Path) -> None:
    """A backend without exec-time tables (only the /proc snapshot at the end)."""
    s = bats_events(close_fd3=False)
    for ev in s.events:
        if isinstance(ev, Exec):
            ev.fds = None
    _, tree = roundtrip(tmp_path, s, ["bats", "t.bats"])
    rep = analyze_fds(tree)
    (lk,) = rep.leaks
    assert lk.process.pid == 104 and lk.fds == [3] and lk.source.pid == 100
    assert [(q.pid, fds) for q, fds in lk.chain] == [(102, []), (103, [])]
    assert pids([w.process for w in lk.waiting]) == [105]
    line = render_fds.leak_lines(lk, tree.start)[0]
    assert line == (f"sleep 300 (pid 104) holds fd 3, a pipe (write end, pipe:[{P1}]) that bats "
                    "(pid 100) opened; it inherited it through bats-exec-suite (pid 102) and "
                    "bats-exec-test (pid 103).")
    # An exec-time table that lacks it contradicts inheritance: not a leak.
    s = bats_events(close_fd3=False)
    for ev in s.events:
        if isinstance(ev, Exec) and ev.pid == 104 and ev.fds is not None:
            ev.fds = [f for f in ev.fds if f.fd != 3]
    _, tree = roundtrip(tmp_path, s, ["bats", "t.bats"])
    assert analyze_fds(tree).leaks == []


def test_bats_control_run_closing_fd3_reports_no_leak(tmp_path: Path) -> None:
    _, tree = roundtrip(tmp_path, bats_events(close_fd3=True), ["bats", "t.bats"])
    rep = analyze_fds(tree)
    # The sleep still holds the output file at fd 4: files are never leaks.
    sleep = tree.find(104)[0]
    assert sleep.exit is None and any(f.fd == 4 for f in sleep.fd_snapshot.fds)  # type: ignore[union-attr]
    assert rep.leaks == []
    text = "".join(render_fds.render(read_recording(tmp_path / "rec.ndjson"), tree))
    assert "Leaked descriptors: none" in text
    assert "0 still open at the end" in text


def test_bats_golden(tmp_path: Path) -> None:
    path, tree = roundtrip(tmp_path, bats_events(close_fd3=False), ["bats", "t.bats"])
    text = "".join(render_fds.render(read_recording(path), tree))
    golden = GOLDEN / "bats-leak.txt"
    if os.environ.get("PROCTRACE_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()


def test_table_lists_every_holder_with_times_and_marks(tmp_path: Path) -> None:
    _, tree = roundtrip(tmp_path, bats_events(close_fd3=False), ["bats", "t.bats"])
    rep = analyze_fds(tree)
    p1 = next(c for c in rep.channels if c.ino == P1)
    assert pids([h.process for h in p1.holders]) == [102, 103, 104, 105]
    by = {h.process.pid: h for h in p1.holders}
    assert by[102].since_fork and by[102].until == tree.find(102)[0].exit_time
    assert by[104].holds_at_end and by[104].snapshot_at_end and by[104].until is None
    assert not by[105].since_fork  # never exec'd: only the end snapshot lists it
    assert by[105].ends == ["read"]
    assert pids([h.process for h in p1.open_at_end]) == [104, 105]
    text = "\n".join(render_fds.report_lines(rep, tree))
    table = text.split(f"pipe:[{P1}]  ", 1)[1].split("\n\n", 1)[0].splitlines()
    assert table[0] == ("opened by bats (pid 100): nearest common ancestor of its holders, "
                        "never seen holding it")
    rows = {r.split()[0]: r for r in table[2:]}
    assert rows["104"].endswith("sleep 300   <- leaked")
    assert "still open" in rows["104"] and " 3 " in rows["104"] and "write" in rows["104"]
    assert rows["105"].endswith("(fork of pid 100, never exec'd)   <- waiting")
    assert "exit" in rows["102"] and "fork" in rows["102"]
    # The pipe a leak is about comes first.
    assert text.index(f"pipe:[{P1}]  opened") < text.index(f"pipe:[{P3}]  opened")


def test_analyze_cli_path_mode_fds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`analyze -d fds` through the dispatcher (its streaming tree keeps fds and snapshots)."""
    assert MODES["fds"] == "proctrace_bcc.render.fds"
    assert renderer("fds") is render_fds
    path, tree = roundtrip(tmp_path, bats_events(close_fd3=False), ["bats", "t.bats"])
    out = tmp_path / "fds.txt"
    analyze(str(path), out, "fds", None)
    assert out.read_text() == "".join(render_fds.render(read_recording(path), tree))
    assert "sleep 300 (pid 104) holds fd 3" in out.read_text()
    # -p: the subtree of bats-exec-suite.  Its top still knows its parent, bats, which
    # held the pipe when it forked bats-exec-suite; the reader is outside the subtree.
    analyze(str(path), out, "fds", 102)
    sub = out.read_text()
    assert f"sleep 300 (pid 104) holds fd 3, a pipe (write end, pipe:[{P1}]) that bats " \
           "(pid 100) opened; it inherited it through bats-exec-suite (pid 102, fd 1) and " \
           "bats-exec-test (pid 103, fds 1, 3)." in sub
    assert f"pipe:[{P1}]  opened by bats (pid 100): it held it when it forked " \
           "bats-exec-suite (pid 102)" in sub
    assert "No recorded process still holds the read end." in sub


def test_report_data_is_json(tmp_path: Path) -> None:
    _, tree = roundtrip(tmp_path, bats_events(close_fd3=False), ["bats", "t.bats"])
    data = render_fds.report_data(tree)
    orjson.dumps(data)
    assert data["has_data"] is True
    assert data["leaks"][0]["pid"] == 104 and data["leaks"][0]["fds"] == [3]
    assert data["leaks"][0]["waiting"] == [105]
    assert data["leaks"][0]["text"][0].startswith("sleep 300 (pid 104) holds fd 3")
    ch = next(c for c in data["channels"] if c["name"] == f"pipe:[{P1}]")
    assert ch["opener_pid"] == 100 and ch["open_at_end"]
    assert [h["pid"] for h in ch["holders"]] == [102, 103, 104, 105]


# ---------------------------------------------------------------------------
# Leak rule


def _daemon_script(daemon_exits_after_parent: bool, fd: int = 3) -> Script:
    """make (100) opens a pipe (jobserver-like) and runs sh (101) which starts a
    daemon (102) in the background; everything exits in the end."""
    s = Script(100)
    s.events.append(Fork(0, 50, 100, 50, 100, 1))
    s.exec(100, 50, ["make", "all"], STD)
    s.fork(100, 101)
    s.exec(101, 100, ["sh", "-c", "daemon &"], [*STD, pipe_r(fd, 500), pipe_w(fd + 1, 500)])
    s.fork(101, 102)
    s.exec(102, 101, ["daemon", "--serve"], [*STD, pipe_r(fd, 500), pipe_w(fd + 1, 500)])
    s.exit(101, 100)
    if daemon_exits_after_parent:
        s.exit(100, 50)
        s.exit(102, 101, ms=50)
    else:
        s.exit(102, 101, ms=50)
        s.exit(100, 50)
    s.end("exited", [])
    return s


def test_a_process_that_outlived_the_opener_leaks(tmp_path: Path) -> None:
    _, tree = roundtrip(tmp_path, _daemon_script(True), ["make", "all"])
    rep = analyze_fds(tree)
    # sh (101), the holders' common ancestor, had it from its first exec: its parent,
    # make (100), held it when it forked sh.
    ch = rep.channels[0]
    assert ch.opener is not None and ch.opener.pid == 100 and ch.rule == "parent"
    # sh (101) exited before make: not a leak; the daemon exited after it: a leak.
    assert [(lk.process.pid, lk.fds, lk.alive) for lk in rep.leaks] == [(102, [3, 4], False)]
    assert rep.leaks[0].ends == ["read", "write"]
    lines = render_fds.leak_lines(rep.leaks[0], tree.start)
    assert lines[0] == ("daemon --serve (pid 102) holds fds 3, 4, a pipe (read and write end, "
                        "pipe:[500]) that make (pid 100) opened; it inherited it through "
                        "sh (pid 101, fds 3, 4).")
    assert lines[1].startswith("    daemon held it until it exited at +")
    assert "after make (pid 100) had exited at +" in lines[1]


def test_a_child_that_exits_before_the_opener_does_not_leak(tmp_path: Path) -> None:
    _, tree = roundtrip(tmp_path, _daemon_script(False), ["make", "all"])
    assert analyze_fds(tree).leaks == []


def test_fds_0_to_2_are_not_leaks(tmp_path: Path) -> None:
    s = Script(100)
    s.events.append(Fork(0, 50, 100, 50, 100, 1))
    s.exec(100, 50, ["sh", "-c", "x"], STD)
    s.fork(100, 101)
    s.exec(101, 100, ["logger"], [pipe_r(0, 600, inherited=False), STD[1], STD[2]])
    s.exit(100, 50)
    s.snapshot(101, snap([pipe_r(0, 600), STD[1], STD[2]]))
    s.end("timeout", [101])
    _, tree = roundtrip(tmp_path, s, ["sh", "-c", "x"])
    rep = analyze_fds(tree)
    assert rep.leaks == [] and len(rep.channels) == 1 and rep.channels[0].open_at_end


def test_closed_before_the_end_is_not_a_leak(tmp_path: Path) -> None:
    s = Script(100)
    s.events.append(Fork(0, 50, 100, 50, 100, 1))
    s.exec(100, 50, ["bash", "run.sh"], STD)
    s.fork(100, 101)
    s.exec(101, 100, ["wrapper"], [*STD, pipe_w(3, 700)])
    s.exec(101, 100, ["server"], STD)  # closed it (or close-on-exec) before this exec
    s.snapshot(101, snap(STD))
    s.end("timeout", [100, 101])
    _, tree = roundtrip(tmp_path, s, ["bash", "run.sh"])
    rep = analyze_fds(tree)
    assert rep.leaks == []
    (h,) = rep.channels[0].holders
    assert h.closed_before == tree.find(101)[0].execs[1].timestamp and not h.holds_at_end


def test_alive_without_snapshot_counts_from_its_last_exec(tmp_path: Path) -> None:
    """The process died between the End decision and the /proc read: no snapshot."""
    s = Script(100)
    s.events.append(Fork(0, 50, 100, 50, 100, 1))
    s.exec(100, 50, ["bash", "run.sh"], STD)
    s.fork(100, 101)
    s.exec(101, 100, ["sleep", "9"], [*STD, pipe_w(3, 700)])
    s.end("timeout", [100, 101])
    _, tree = roundtrip(tmp_path, s, ["bash", "run.sh"])
    rep = analyze_fds(tree)
    (lk,) = rep.leaks
    assert lk.holding.holds_at_end and not lk.holding.snapshot_at_end
    text = "\n".join(render_fds.report_lines(rep, tree))
    assert "No recorded process still holds the read end." in text
    assert "alive at end" in text


def test_socket_leak_and_other_holders(tmp_path: Path) -> None:
    s = Script(100)
    s.events.append(Fork(0, 50, 100, 50, 100, 1))
    s.exec(100, 50, ["python3", "-m", "runner"], STD)
    # The runner opens the socket after its exec, then starts two agents.
    s.fork(100, 101)
    s.exec(101, 100, ["agent"], [*STD, sock(5, 800)])
    s.fork(100, 102)
    s.exec(102, 100, ["agent", "-2"], [*STD, sock(5, 800)])
    s.snapshot(100, snap([*STD, sock(5, 800)]))
    s.snapshot(101, snap([*STD, sock(5, 800)]))
    s.snapshot(102, snap([*STD, sock(5, 800)]))
    s.end("timeout", [100, 101, 102])
    _, tree = roundtrip(tmp_path, s, ["python3", "-m", "runner"])
    rep = analyze_fds(tree)
    ch = rep.channels[0]
    assert ch.kind == "socket" and ch.opener is not None and ch.opener.pid == 100
    assert ch.rule == "seen"  # its exec did not list it, its end snapshot does
    assert [lk.process.pid for lk in rep.leaks] == [101, 102]
    lk = rep.leaks[0]
    assert lk.waiting == [] and pids([h.process for h in lk.others]) == [102, 100]
    lines = render_fds.leak_lines(lk, tree.start)
    assert lines[0] == ("agent (pid 101) holds fd 5, a socket (socket:[800]) that "
                        "runner (pid 100) opened; it inherited it directly.")
    assert lines[-1] == ("    Also still holding the same end: agent (pid 102, fd 5) and "
                         "runner (pid 100, fd 5).")


# ---------------------------------------------------------------------------
# Opener rules


def test_opener_outside_the_recording(tmp_path: Path) -> None:
    """The root was started with a pipe at fd 3 (e.g. a make jobserver): it came from outside."""
    s = Script(100)
    s.events.append(Fork(0, 50, 100, 50, 100, 1))
    s.exec(100, 50, ["bats", "t.bats"], [*STD, pipe_r(3, 900)])
    s.fork(100, 101)
    s.exec(101, 100, ["sleep", "300"], [*STD, pipe_r(3, 900)])
    s.snapshot(100, snap([*STD, pipe_r(3, 900)]))
    s.snapshot(101, snap([*STD, pipe_r(3, 900)]))
    s.end("timeout", [100, 101])
    _, tree = roundtrip(tmp_path, s, ["bats", "t.bats"])
    rep = analyze_fds(tree)
    ch = rep.channels[0]
    assert ch.rule == "outside" and ch.opener is None and ch.entered_by is not None
    assert ch.entered_by.pid == 100
    assert [lk.process.pid for lk in rep.leaks] == [101]  # not the root itself
    assert "came from outside the recording (the first process, bats (pid 100), was started " \
           "with it)" in render_fds.opener_words(ch)


def test_opener_parent_rule_and_image_at_the_time(tmp_path: Path) -> None:
    """`$(dirname "$(readlink -f x)")`: the subshell opens the pipe, forks readlink, then
    execs dirname itself; it is named by what it ran then, and what it ran later."""
    s = Script(100)
    s.events.append(Fork(0, 50, 100, 50, 100, 1))
    s.exec(100, 50, ["bash", "/usr/bin/bats", "t.bats"], STD)
    s.fork(100, 101)
    s.fork(101, 102)
    s.exec(102, 101, ["readlink", "-f", "x"], [STD[0], pipe_w(1, 1000, False), STD[2]])
    s.exit(102, 101)
    s.exec(101, 100, ["dirname", "/a/b"], [STD[0], pipe_w(1, 1001, False), STD[2]])
    s.exit(101, 100)
    s.exit(100, 50)
    s.end("exited", [])
    _, tree = roundtrip(tmp_path, s, ["bats", "t.bats"])
    rep = analyze_fds(tree)
    ch = next(c for c in rep.channels if c.ino == 1000)
    assert ch.rule == "parent" and ch.opener is not None and ch.opener.pid == 101
    assert render_fds.opener_words(ch) == ("opened by bats (pid 101, later dirname): it held it "
                                           "when it forked readlink (pid 102)")
    assert rep.leaks == []


def test_named_fifo_holders_without_common_ancestor(tmp_path: Path) -> None:
    s = Script(100)
    s.events.append(Fork(0, 50, 100, 50, 100, 1))
    s.exec(100, 50, ["writer"], [*STD, pipe_w(3, 1100, False)], ms=5)
    s.events.append(Exec.from_argv(s.tick(), 200, 1, 200, ["reader"],
                                   fds=[*STD, pipe_r(3, 1100, False)]))
    s.end("timeout", [100, 200])
    _, tree = roundtrip(tmp_path, s, ["writer"])
    rep = analyze_fds(tree)
    ch = rep.channels[0]
    assert common_ancestor(h.process for h in ch.holders) is None
    assert ch.rule == "first-seen" and ch.opener is not None and ch.opener.pid == 100
    assert rep.leaks == []


def test_pid_reuse_keeps_holders_apart(tmp_path: Path) -> None:
    s = Script(100)
    s.events.append(Fork(0, 50, 100, 50, 100, 1))
    s.exec(100, 50, ["bash", "x.sh"], STD)
    s.fork(100, 101)
    s.exec(101, 100, ["first"], [*STD, pipe_w(3, 1200)])
    s.exit(101, 100)
    s.fork(100, 101)  # pid 101 again
    s.exec(101, 100, ["second"], [*STD, pipe_w(3, 1200)])
    s.snapshot(100, snap(STD))
    s.snapshot(101, snap([*STD, pipe_w(3, 1200)]))
    s.end("timeout", [100, 101])
    _, tree = roundtrip(tmp_path, s, ["bash", "x.sh"])
    rep = analyze_fds(tree)
    (ch,) = rep.channels
    assert [h.process.command for h in ch.holders] == ["first", "second"]
    assert [h.holds_at_end for h in ch.holders] == [False, True]
    assert [lk.process.command for lk in rep.leaks] == ["second"]


def test_without_descriptor_data(tmp_path: Path) -> None:
    s = Script(100)
    s.events.append(Fork(0, 50, 100, 50, 100, 1))
    s.exec(100, 50, ["true"], None)
    s.exit(100, 50)
    s.end("exited", [])
    path, tree = roundtrip(tmp_path, s, ["true"])
    rep = analyze_fds(tree)
    assert rep == FdReport([], [], False, 0, tree.end, LONG_MIN_NS)
    text = "".join(render_fds.render(read_recording(path), tree))
    assert text == ("No descriptor data in this recording: record it with "
                    "`proctrace-bcc record --fds`.\n")


# ---------------------------------------------------------------------------
# Naming


@pytest.mark.parametrize(("argv", "name", "label"), [
    (["bash", "/usr/libexec/bats-core/bats", "t.bats"], "bats", "bats t.bats"),
    (["/usr/bin/env", "BATS_ROOT=/usr", "/usr/libexec/bats-core/bats", "t.bats"], "bats",
     "bats t.bats"),
    (["env", "bash", "/x/run.sh", "-v"], "run.sh", "run.sh -v"),
    (["python3", "-m", "pytest", "-q"], "pytest", "pytest -q"),
    (["python3", "-u", "x.py"], "python3", "python3 -u x.py"),
    (["python3.11", "tool.py"], "tool.py", "tool.py"),
    (["bash", "-c", "sleep 1"], "bash", "bash -c sleep 1"),
    (["/bin/sleep", "300"], "sleep", "sleep 300"),
    (["sleep", "x" * 100], "sleep", "sleep " + "x" * 53 + "…"),
    (["printf", "a\nb"], "printf", "printf a\\nb"),
])
def test_names(tmp_path: Path, argv: list[str], name: str, label: str) -> None:
    s = Script(100)
    s.events.append(Fork(0, 50, 100, 50, 100, 1))
    s.exec(100, 50, argv, STD)
    s.fork(100, 101)
    s.end("timeout", [100, 101])
    _, tree = roundtrip(tmp_path, s, argv)
    p, child = tree.find(100)[0], tree.find(101)[0]
    assert render_fds.name(p) == name
    assert render_fds.label(p) == label
    assert render_fds.name(child) == name  # never exec'd: runs its parent's program
