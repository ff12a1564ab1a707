"""The bpftrace backend without root: its parser on captured bpftrace 0.17 output,
on hand-made lines for the edge cases, and the script rendering.

The captures in data/ are bpftrace's raw stdout while data/capture_bpftrace.py's
WORKLOAD ran (regenerate them with that script, as root).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pytest

from proctrace_bcc.backends.base import BackendConfig
from proctrace_bcc.backends.bpftrace import backend, parser, probe, protocol, script
from proctrace_bcc.backends.bpftrace.parser import Parser
from proctrace_bcc.backends.bpftrace.protocol import CHUNK
from proctrace_bcc.errors import BackendUnavailable, RecorderError
from proctrace_bcc.events import (
    Event,
    Exec,
    ExecFailed,
    Exit,
    Fork,
    Lost,
    SetPGID,
    SetSID,
    to_bytes,
)

DATA = Path(__file__).resolve().parent / "data"
CAPTURES = sorted(DATA.glob("bpftrace-*.jsonl"))


def parse(data: bytes, max_chunks: int = 245) -> tuple[Parser, list[Event]]:
    p = Parser(max_chunks, clock_offset=0)
    p.feed(data)
    p.expire(everything=True)
    return p, p.take()


def printf(text: str) -> bytes:
    import orjson

    return orjson.dumps({"type": "printf", "data": text + "\n"})


def hexs(data: bytes, size: int = CHUNK) -> str:
    """What `%rx` prints for a buffer of `size` bytes."""
    return "".join(f"\\x{b:02x}" for b in data.ljust(size, b"\0"))


# ---------------------------------------------------------------------------
# Captured output


def test_there_are_captures() -> None:
    assert {p.name for p in CAPTURES} >= {"bpftrace-v0.17.0-prepare.jsonl",
                                          "bpftrace-v0.17.0-noprepare.jsonl"}


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_capture_gives_the_workloads_events(path: Path) -> None:
    p, evs = parse(path.read_bytes())
    assert (p.bad, p.orphans, p.pending, p.early_z) == (0, 0, {}, {})
    assert p.attached and p.handshakes >= 1 and p.level == 0 and p.tracer > 0
    execs = [e for e in evs if isinstance(e, Exec)]
    argvs = [e.argv for e in execs]
    assert argvs[1:] == [
        ["./script.sh", "arg one", ""],
        ["setsid", "sh", "-c", "exit 0"],
        ["sh", "-c", "exit 0"],
        ["bash", "-c", "set -m; sleep 0.01 & wait"],
        ["sleep", "0.01"],
        ["sh", "-c", "kill -KILL $$"],
        ["seq", "450"],
        ["/bin/echo", "x" * 450, "two words", "new\nline"],
        ["/usr/bin/python3", "-c",
         'import os; os.execv("/bin/true", [b"true", b"\\xff\\xfe-bytes", b""])'],
        ["true", "\udcff\udcfe-bytes", ""],
    ]
    assert argvs[0] is not None and argvs[0][:2] == ["sh", "-c"]
    assert not any(e.truncated for e in execs)
    assert [to_bytes(a) for a in execs[-1].argv or []] == [b"true", b"\xff\xfe-bytes", b""]
    # the `#!/bin/sh -e` script: interpreter split off, the caller's argv[0] back
    script = execs[1]
    assert script.interpreter == ["/bin/sh", "-e"] and script.filename == "./script.sh"
    assert all(e.interpreter is None for e in execs if e is not script)
    assert [e.filename for e in execs[2:4]] == ["/usr/bin/setsid", "/usr/bin/sh"]
    # every exec'ing process was forked inside the tree, and processes are not threads
    forks = [e for e in evs if isinstance(e, Fork)]
    children = {f.child_pid for f in forks}
    assert {e.pid for e in execs} <= children
    assert len(children) == len(forks)
    # exits: each forked process once, with its status
    exits = {e.pid: e for e in evs if isinstance(e, Exit)}
    assert set(exits) == children
    assert exits[script.pid].exit_code == 3
    killed = next(e for e in execs if e.argv == ["sh", "-c", "kill -KILL $$"])
    assert (exits[killed.pid].exit_code, exits[killed.pid].signal) == (None, 9)
    failed = [e for e in evs if isinstance(e, ExecFailed)]
    assert [(f.filename, f.errno) for f in failed] == [("/no/such/prog", 2)]
    assert exits[failed[0].pid].exit_code == 127
    # setsid: a new session and group led by the caller
    setsid = [e for e in evs if isinstance(e, SetSID)]
    assert len(setsid) == 1 and setsid[0].sid == setsid[0].pid == setsid[0].pgid
    after = next(e for e in execs if e.argv == ["sh", "-c", "exit 0"])
    assert (after.pid, after.sid, after.pgid) == (setsid[0].pid, setsid[0].pid, setsid[0].pid)
    # bash job control: setpgid(child, child) from both sides
    sleep = next(e for e in execs if e.argv == ["sleep", "0.01"])
    pg = [e for e in evs if isinstance(e, SetPGID)]
    assert pg and all(e.target_pid == sleep.pid and e.pgid == sleep.pid for e in pg)
    assert sleep.pgid == sleep.pid


def test_both_script_detection_modes_agree() -> None:
    """With and without sched_prepare_exec the same workload gives the same events."""
    def shape(path: Path) -> list[tuple[object, ...]]:
        _, evs = parse(path.read_bytes())
        out: list[tuple[object, ...]] = []
        for e in evs:
            if isinstance(e, Exec):
                out.append(("Exec", tuple(e.argv or []), e.filename, e.interpreter and
                            tuple(e.interpreter), e.truncated))
            elif isinstance(e, Exit):
                out.append(("Exit", e.exit_code, e.signal))
            else:
                out.append((type(e).__name__,))
        return out

    assert shape(DATA / "bpftrace-v0.17.0-prepare.jsonl") == shape(
        DATA / "bpftrace-v0.17.0-noprepare.jsonl")


# ---------------------------------------------------------------------------
# Hand-made lines


def exec_lines(area: bytes, *, tid: int = 100, ts: int = 5000, script: int = 0,
               filename: bytes = b"/bin/x", z: bytes | Literal[False] | None = False,
               max_chunks: int = 245, skip: tuple[int, ...] = (),
               stack_below: bytes = b"\x01" * CHUNK) -> list[bytes]:
    """The lines proctrace.bt prints for one exec whose argument area is `area`.

    Chunk windows are read as the script does: the last one ends at arg_end,
    so a short area comes with bytes from below arg_start (`stack_below`).
    """
    mem = stack_below + area + b"\xee" * CHUNK  # what lies around the area in memory
    base = len(stack_below)
    n = (len(area) + CHUNK - 1) // CHUNK
    lines = [printf(f"E {ts} {tid} {tid} 1 1 1 0 {len(area)} {script}")]
    if z is not False:
        lines.insert(0, printf(f"Z {tid} {ts} 0") if z is None
                     else printf(f"Z {tid} {ts} 1 {hexs(z[:CHUNK - 1])}"))
    for i in range(min(n, max_chunks)):
        if i in skip:
            continue
        p = i * CHUNK
        if p + CHUNK > len(area):
            p = len(area) - CHUNK
        lines.append(printf(f"A {tid} {ts} {i} {hexs(mem[base + p:base + p + CHUNK])}"))
    lines.append(printf(f"N {tid} {ts} {hexs(filename[:CHUNK - 1])}"))
    return lines


def one_exec(lines: list[bytes], max_chunks: int = 245) -> Exec:
    p, evs = parse(b"\n".join(lines), max_chunks)
    assert p.bad == 0
    assert len(evs) == 1 and isinstance(evs[0], Exec)
    return evs[0]


@pytest.mark.parametrize("size", [0, 1, 5, 199, 200, 201, 399, 400, 450, 4097])
def test_argument_area_is_exact_at_every_length(size: int) -> None:
    words = [f"w{i}".encode() for i in range(size)]
    area = b"\0".join(words)[:size]
    if size:
        area = area[:-1] + b"\0"
    ex = one_exec(exec_lines(area))
    want = area[:-1].split(b"\0") if area else []
    assert [to_bytes(a) for a in ex.argv or []] == want
    assert ex.truncated is False


def test_area_beyond_the_limit_is_cut_and_flagged() -> None:
    area = b"\0".join([b"y" * 999] * 5) + b"\0"  # 5000 bytes
    ex = one_exec(exec_lines(area, max_chunks=7), max_chunks=7)
    assert ex.truncated is True
    assert ex.argv == ["y" * 999, "y" * 400]  # 7 chunks: 1400 bytes, the second one cut


def test_a_lost_chunk_keeps_only_what_came_before_it() -> None:
    area = b"\0".join([b"a" * 150, b"b" * 150, b"c" * 150]) + b"\0"
    ex = one_exec(exec_lines(area, skip=(1,)))
    assert ex.truncated is True
    assert ex.argv == ["a" * 150, "b" * 49]


def test_an_exec_waits_for_all_its_lines_then_times_out() -> None:
    now = [100.0]
    p = Parser(245, clock_offset=0, now=lambda: now[0])
    lines = exec_lines(b"ls\0-l\0")
    p.feed(b"\n".join(lines[:-1]))  # no N line yet
    p.expire()
    assert p.take() == []
    now[0] += parser.STALE_EXEC_S + 0.1
    p.expire()
    (ex,) = p.take()
    assert isinstance(ex, Exec) and ex.argv == ["ls", "-l"]
    assert ex.truncated is True and ex.filename is None


def test_lines_of_two_execs_may_interleave() -> None:
    a = exec_lines(b"one\0" * 60, tid=7, ts=10)
    b = exec_lines(b"two\0" * 60, tid=7, ts=20)
    mixed = [x for pair in zip(a, b, strict=True) for x in pair]
    _, evs = parse(b"\n".join(mixed))
    assert [e.argv for e in evs if isinstance(e, Exec)] == [["one"] * 60, ["two"] * 60]


SCRIPT_AREA = b"/bin/sh\0-e\0./run.sh\0arg one\0\0"


@pytest.mark.parametrize("z_first", [True, False])
def test_script_gets_the_callers_argv0_back(z_first: bool) -> None:
    lines = exec_lines(SCRIPT_AREA, script=protocol.SCRIPT_YES, filename=b"./run.sh", z=b"run")
    if not z_first:  # the Z line came from another CPU, after the rest
        lines = lines[1:] + lines[:1]
    ex = one_exec(lines)
    assert ex.argv == ["run", "arg one", ""]
    assert ex.interpreter == ["/bin/sh", "-e"] and ex.filename == "./run.sh"
    assert ex.truncated is False


def test_script_whose_argv0_was_unreadable_is_flagged() -> None:
    ex = one_exec(exec_lines(SCRIPT_AREA, script=protocol.SCRIPT_YES, filename=b"./run.sh", z=None))
    assert ex.argv == ["./run.sh", "arg one", ""] and ex.truncated is True


def test_without_prepare_exec_the_parser_tells_scripts_apart() -> None:
    plain = one_exec(exec_lines(b"sh\0-c\0true\0", script=protocol.SCRIPT_ASK, filename=b"/bin/sh",
                                z=b"sh"))
    assert plain.argv == ["sh", "-c", "true"] and plain.interpreter is None
    script = one_exec(exec_lines(SCRIPT_AREA, script=protocol.SCRIPT_ASK, filename=b"./run.sh",
                                 z=b"./run.sh"))
    assert script.argv == ["./run.sh", "arg one", ""] and script.interpreter == ["/bin/sh", "-e"]


def test_long_filename_is_flagged_and_still_splits_a_script() -> None:
    long = b"/" + b"d" * 300 + b"/run.sh"
    area = b"/bin/sh\0" + long + b"\0x\0"
    ex = one_exec(exec_lines(area, script=protocol.SCRIPT_YES, filename=long, z=b"run"))
    assert ex.truncated is True
    assert ex.interpreter == ["/bin/sh"] and ex.argv == ["run", "x"]
    assert ex.filename == long[:CHUNK - 1].decode()


def test_long_argv0_is_flagged() -> None:
    a0 = b"a" * 250
    ex = one_exec(exec_lines(SCRIPT_AREA, script=protocol.SCRIPT_YES, filename=b"./run.sh", z=a0))
    assert ex.truncated is True and (ex.argv or [""])[0] == "a" * (CHUNK - 1)


def test_failed_exec_filename_cut_at_the_limit_is_flagged() -> None:
    p = Parser(245, clock_offset=0)
    p.feed(b"\n".join([
        printf(f"X 1 11 2 {hexs((b'/' + b'd' * 300)[:CHUNK - 1])}"),  # str() kept 199 bytes
        printf(f"X 2 11 2 {hexs(b'/' + b'd' * (CHUNK - 2))}"),  # 199 bytes: may be cut too
        printf(f"X 3 11 2 {hexs(b'/' + b'd' * (CHUNK - 3))}"),  # 198 bytes: whole
    ]))
    assert [(len(e.filename), e.truncated) for e in p.take() if isinstance(e, ExecFailed)] == [
        (CHUNK - 1, True), (CHUNK - 1, True), (CHUNK - 2, False)]


def test_simple_records_and_clock_offset() -> None:
    p = Parser(245, clock_offset=1000)
    p.feed(b"\n".join([
        printf("F 5000 10 10 9 11"),
        printf("T 6000 11 10 10 768"),  # exit(3)
        printf("T 6001 12 10 10 9"),  # SIGKILL
        printf("T 6002 13 10 10 134"),  # SIGABRT, core dumped
        printf(f"X 7000 11 2 {hexs(b'/no/such')}"),
        printf("P 8000 11 10 0 0"),  # setpgid(0, 0)
        printf("P 8001 11 10 12 0"),  # setpgid(12, 0)
        printf("P 8002 11 10 12 10"),
        printf("S 9000 11 10 11 11"),
    ]))
    assert p.take() == [
        Fork(4000, 10, 11, 10, child_pgid=10, sid=9),
        Exit(5000, 11, 10, 10, exit_code=3),
        Exit(5001, 12, 10, 10, signal=9),
        Exit(5002, 13, 10, 10, signal=6, core_dumped=True),
        ExecFailed(6000, 11, "/no/such", 2),
        SetPGID(7000, 11, 10, 11, target_pid=11),
        SetPGID(7001, 11, 10, 12, target_pid=12),
        SetPGID(7002, 11, 10, 10, target_pid=12),
        SetSID(8000, 11, 10, 11, sid=11),
    ]


def test_lost_events_handshake_and_junk() -> None:
    p = Parser(245, clock_offset=0)
    p.feed(b"\n".join([
        b'{"type": "attached_probes", "data": {"probes": 17}}',
        b'{"type": "lost_events", "data": {"events": 42}}',
        b'{"type": "lost_events", "count": 3, "data": {"events": 3}}',
        printf("H 2 4026532000 1"),
        b'{"type": "map", "data": {"@xf": {"1": 2}}}',
        b"not json",
        printf("Q what"),
        printf("F 1 2"),
        printf(f"A 1 2 0 {hexs(b'x')}"),
    ]))
    evs = p.take()
    assert [(type(e), e.count) for e in evs if isinstance(e, Lost)] == [(Lost, 42), (Lost, 3)]
    assert len(evs) == 2 and p.lost == 45
    assert (p.attached, p.handshakes, p.level, p.inum, p.tracer) == (17, 1, 2, 4026532000, 1)
    assert (p.bad, p.orphans) == (3, 1)


def test_sync_round_completes_when_every_cpu_answered() -> None:
    """BpftraceBackend.sync's bookkeeping: H lines with (seq, cpu) answer a round."""
    b = backend.BpftraceBackend(BackendConfig(tracer_pid=1))
    assert b.synced_until() == 0  # nothing proven before the first round
    b._round = backend._Round(started=1000, want={1: 0, 2: 1})
    b.parser.feed(b"\n".join([printf("H 0 4026531836 5738 0 1"),  # start-up: not an answer
                               printf("H 0 4026531836 5738 1 0")]))
    assert b.parser.answers == {1: 0} and b.parser.handshakes == 2
    assert b._finish_round() is False and b.synced_until() == 0
    b.parser.feed(printf("H 0 4026531836 5738 2 1"))
    assert b._finish_round() is True and b.synced_until() == 1000
    assert b._round is None and b.parser.answers == {} and b.sync_rounds == 1
    # answers of an abandoned older round are cleaned up with the newer round's
    b._round = backend._Round(started=3000, want={5: 0, 6: 1})
    b.parser.feed(b"\n".join(printf(f"H 0 1 5738 {s} {c}") for s, c in
                              [(3, 0), (5, 0), (4, 1), (6, 1)]))
    assert b._finish_round() is True and b.synced_until() == 3000 and b.parser.answers == {}
    # an answer from another CPU than the one its call was pinned to proves nothing
    b._round = backend._Round(started=5000, want={7: 0, 8: 1})
    b.parser.feed(b"\n".join([printf("H 0 1 5738 7 1"), printf("H 0 1 5738 8 1")]))
    assert b._finish_round() is None and b.synced_until() == 3000 and b._round is None
    # the proof never moves back
    b._round = backend._Round(started=2000, want={9: -1})
    b.parser.feed(printf("H 0 1 5738 9 0"))
    assert b._finish_round() is True and b.synced_until() == 3000


def test_cpu_lists() -> None:
    assert probe.parse_cpu_list("0-3,6,8-9\n") == [0, 1, 2, 3, 6, 8, 9]
    assert probe.parse_cpu_list("0\n") == [0]
    assert probe.online_cpus()  # this machine's


def test_c_string_and_unhex() -> None:
    assert protocol.unhex("\\x00\\x41\\xff") == b"\0A\xff"
    assert protocol.c_string(b"ab\0cd") == (b"ab", False)
    assert protocol.c_string(b"x" * (CHUNK - 1) + b"\0") == (b"x" * (CHUNK - 1), True)


# ---------------------------------------------------------------------------
# The script and the binary


@pytest.mark.parametrize("prepare", [True, False])
@pytest.mark.parametrize("init", [True, False])
@pytest.mark.parametrize("version", [(0, 17, 0), (0, 19, 0), (0, 26, 1)])
def test_render_script(prepare: bool, init: bool, version: probe.Version) -> None:
    text = script.render_script(script.script_path().read_text(), version, prepare, init)
    assert "//@" not in text and "NR(" not in text
    assert ("tracepoint:sched:sched_prepare_exec" in text) == prepare
    assert ("args->" in text) == (version < (0, 19, 0))
    assert ("args." in text) == (version >= (0, 19, 0))
    assert ("ns.inum == @inum" in text) == (not init)
    # balanced braces, and every probe's maps are written before a later probe reads them
    assert text.count("{") == text.count("}")
    assert re.search(r"\$[1-4]\b", text)


def test_render_rejects_bad_templates() -> None:
    with pytest.raises(RecorderError, match="unknown condition"):
        script.render_script("//@if FOO\n//@endif\n", (0, 17, 0), True)
    with pytest.raises(RecorderError, match="without //@if"):
        script.render_script("//@endif\n", (0, 17, 0), True)
    with pytest.raises(RecorderError, match="without //@endif"):
        script.render_script("//@if PREPARE\n", (0, 17, 0), True)


def test_versions_env_and_limits() -> None:
    assert probe.parse_version("bpftrace v0.17.0\n") == (0, 17, 0)
    assert probe.parse_version("bpftrace v0.21.2-12-gabcdef") == (0, 21, 2)
    assert probe.parse_version("bpftrace 0.23") == (0, 23, 0)
    assert probe.parse_version("nothing") is None
    old = script.script_env((0, 17, 0), 256)
    assert old["BPFTRACE_STRLEN"] == "200" and "BPFTRACE_MAP_KEYS_MAX" in old
    new = script.script_env((0, 21, 0), 300)
    assert new["BPFTRACE_MAX_STRLEN"] == "200" and "BPFTRACE_MAX_MAP_KEYS" in new
    assert new["BPFTRACE_PERF_RB_PAGES"] == "256"  # a power of two
    # --argv-max is clamped as the BCC backend clamps it (BackendConfig.argv_bytes)
    def chunks(argv_max: int) -> int:
        return script.argv_chunks(BackendConfig(None, argv_max=argv_max).argv_bytes())
    assert chunks(65536 - 4096) == (65536 - 4 * 4096) // CHUNK
    assert chunks(10) == 4096 // CHUNK


def fake_bpftrace(tmp_path: Path, version_line: str) -> str:
    exe = tmp_path / "bpftrace"
    exe.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    exe.chmod(0o755)
    return str(exe)


def test_too_old_or_odd_bpftrace_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match=r"too old.*0\.17\.0 or newer"):
        probe.bpftrace_version(fake_bpftrace(tmp_path, "bpftrace v0.16.0"))
    with pytest.raises(BackendUnavailable, match="did not print a version"):
        probe.bpftrace_version(fake_bpftrace(tmp_path, "hello"))
    assert probe.bpftrace_version(fake_bpftrace(tmp_path, "bpftrace v0.26.1")) == (0, 26, 1)
    with pytest.raises(BackendUnavailable, match="not an executable"):
        probe.find_bpftrace(str(tmp_path / "missing"))


def test_kernel_version_fallback_for_prepare_exec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "has_tracepoint", lambda name: None)
    assert probe.kernel_has_prepare_exec("6.10.0-foo") is True
    assert probe.kernel_has_prepare_exec("6.1.0-28-amd64") is False

