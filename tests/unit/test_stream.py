"""The streaming reader and its tree builder against the reference (tree.build_tree).

`tree.FastBuilder` and `membership.Membership` apply the rules of `lineage.Lineage`
to parsed dicts (`add_body`) and fall back to the events (`add`); these
tests run both on random recordings (PID reuse, events before their fork, invalid
UTF-8, fds, disorder) and require the same trees, the same selected events, and the
same output whatever the reading order tolerance.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from proctrace_bcc.analysis import Analysis, restrict
from proctrace_bcc.analyze import analyze
from proctrace_bcc.codec import event_to_obj
from proctrace_bcc.errors import RecordingError
from proctrace_bcc.events import (
    End,
    Event,
    Exec,
    ExecFailed,
    Exit,
    FdInfo,
    FdSnapshot,
    Fork,
    Lost,
    ProcState,
    SetPGID,
    SetSID,
    Signal,
    from_bytes,
)
from proctrace_bcc.read import ALL, DIRECT, WINDOWED, OutOfOrder, Source, read_recording
from proctrace_bcc.read.order import reorder as _reorder
from proctrace_bcc.render.sequential import clean
from proctrace_bcc.tree import Process, ProcessTree, build_tree, build_tree_with_owners
from proctrace_bcc.writer import RecordingWriter


def random_events(seed: int, n: int = 400) -> list[Event]:
    rnd = random.Random(seed)
    t = 0
    live = [100]
    exited: list[int] = []
    evs: list[Event] = [Exec.from_argv(0, 100, 1, 100, ["init-ish"])]
    for _ in range(n):
        t += rnd.randrange(1, 1000)
        r = rnd.random()
        pid = rnd.choice(live)
        if r < 0.3:
            child = rnd.choice(exited) if exited and rnd.random() < 0.4 else rnd.randrange(
                101, 180)
            if child in live:
                continue
            if child in exited:
                exited.remove(child)
            if rnd.random() < 0.05:  # the child's exec is seen before its fork
                evs.append(Exec.from_argv(t, child, pid, pid, ["early", str(child)]))
                t += 1
            evs.append(Fork(t, pid, child, pid, rnd.choice([None, pid, child]),
                            rnd.choice([None, 7])))
            live.append(child)
        elif r < 0.55:
            argv = [rnd.choice(["sh", "cc", from_bytes(b"\xffbin")]), f"a:{t}", "#x;y"]
            kw: dict[str, Any] = {"filename": rnd.choice([None, "/bin/" + str(t),
                                                          from_bytes(b"/\xfe")])}
            if rnd.random() < 0.1:
                kw["fds"] = [FdInfo(0, "pipe", 1, 2), FdInfo(3, "file", path=from_bytes(b"/t\xff"))]
            if rnd.random() < 0.1:
                kw["interpreter"] = ["/bin/sh", "x"]
            evs.append(Exec.from_argv(t, pid, 100, rnd.choice([pid, 100]), argv,
                                      sid=rnd.choice([None, 5, pid]), uid=rnd.choice([None, 0]),
                                      truncated=rnd.random() < 0.1, **kw))
        elif r < 0.65:
            evs.append(ExecFailed(t, pid, rnd.choice(["/x", from_bytes(b"/\xff")]), 2,
                                  truncated=t % 3 == 0))
        elif r < 0.72:
            evs.append(SetPGID(t, 100, 1, rnd.choice([pid, 100]), pid))
        elif r < 0.77:
            evs.append(SetSID(t, pid, 100, pid, pid))
        elif r < 0.79:
            evs.append(Lost(t, rnd.randrange(1, 5), 0))
        elif r < 0.81:
            evs.append(FdSnapshot(t, rnd.randrange(90, 200), [FdInfo(1, "tty", 3, 4)]))
        elif pid != 100 and len(live) > 1:
            evs.append(Exit(t, pid, 100, pid, *rnd.choice([(0, None), (1, None), (None, 9)])))
            live.remove(pid)
            exited.append(pid)
    evs.append(End(t + 5, "exited", sorted(live), 0, 0))
    return evs


def write(path: Path, events: list[Event], root: int | None, shuffle: int = 0,
          seed: int = 0) -> Path:
    lines = [orjson.dumps({"Header": {"format": "proctrace-bcc", "schema": 1,
                                      "root_pid": root, "raw": root is None}})]
    w = RecordingWriter(path)
    w.close()
    from proctrace_bcc.codec import dumps_event

    body = [dumps_event(e).rstrip(b"\n") for e in events]
    rnd = random.Random(seed)
    for _ in range(shuffle):  # local disorder: swap neighbours
        i = rnd.randrange(len(body) - 1)
        body[i], body[i + 1] = body[i + 1], body[i]
    path.write_bytes(b"\n".join(lines + body) + b"\n")
    return path


def shape(tree: ProcessTree) -> list[Any]:
    def key(p: Process | None) -> Any:
        return None if p is None else p.key

    out: list[Any] = [[key(r) for r in tree.roots], tree.start, tree.end, tree.lost]
    for p in tree.processes:
        out.append((p.key, p.ppid, key(p.parent), p.fork_time, p.inherited_command,
                    [(e.timestamp, e.cmdline, e.argv, e.filename, e.interpreter, e.truncated,
                      e.fds) for e in p.execs],
                    p.failed_execs, p.exit, p.pgid_history, p.sid_history,
                    [key(c) for c in p.children], p.uid, p.fd_snapshot, p.depth))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_fast_builder_matches_reference(tmp_path: Path, seed: int) -> None:
    f = write(tmp_path / "r.ndjson", random_events(seed), None)
    rec = read_recording(f)
    ref = build_tree(rec.events, rec.header)
    with Source(f) as src:
        an = Analysis(src)
        an.run()
        _, tree = an.finish()
    assert shape(tree) == shape(ref)


@pytest.mark.parametrize("seed", range(6))
def test_fast_builder_matches_reference_with_env_and_states(tmp_path: Path, seed: int) -> None:
    # Execs with env (the heavy node keeps it: the reference path), ProcState and Signal
    # (they belong to their live process, changing nothing): one set of rules.
    rnd = random.Random(seed)
    events: list[Event] = []
    for ev in random_events(seed):
        if isinstance(ev, Exec) and rnd.random() < 0.3:
            ev.env = {"CI": "1", "BATS_TEST_NAME": f"t{ev.timestamp}"}
        events.append(ev)
        if not isinstance(ev, End) and rnd.random() < 0.1:
            pid = int(getattr(ev, "pid", getattr(ev, "child_pid", 100)))
            state: Event = (ProcState(ev.timestamp, pid, "timeout", "S", "pipe_read")
                            if rnd.random() < 0.5 else Signal(ev.timestamp, pid, 15, 100, "bash"))
            events.append(state)
    f = write(tmp_path / "r.ndjson", events, None)
    rec = read_recording(f)
    ref, owners = build_tree_with_owners(rec.events, rec.header)
    with Source(f) as src:
        an = Analysis(src)
        got = [(ts, tag, None if owner is None else owner.key)
               for chunk in an.chunks() for ts, _, tag, _, owner, _ in chunk]
        _, tree = an.finish()
    assert shape(tree) == shape(ref)
    assert [[e.env for e in p.execs] for p in tree.processes] == [
        [e.env for e in p.execs] for p in ref.processes]
    assert got == [(e.timestamp, e.KIND, None if o is None else o.key)
                   for e, o in zip(rec.events, owners, strict=True)]


@pytest.mark.parametrize("seed", range(8))
def test_selection_matches_reference(tmp_path: Path, seed: int) -> None:
    events = random_events(seed)
    f = write(tmp_path / "r.ndjson", events, None)
    rec = read_recording(f)
    pids = sorted({e.child_pid for e in events if isinstance(e, Fork)})
    for root in pids[:: max(1, len(pids) // 5)]:
        sub_rec, sub = restrict(rec, root)
        with Source(f) as src:
            an = Analysis(src, root)
            kept = [(ts, tag) for chunk in an.chunks()
                    for ts, _, tag, _, _, member in chunk if member]
            _, tree = an.finish()
        assert shape(tree) == shape(sub)
        assert kept == [(e.timestamp, e.KIND) for e in sub_rec.events]
        with Source(f) as src:  # the same without building the tree
            light = Analysis(src, root, tree=False)
            kept = [(ts, tag) for chunk in light.chunks()
                    for ts, _, tag, _, _, member in chunk if member]
            light.check()
        assert kept == [(e.timestamp, e.KIND) for e in sub_rec.events]


@pytest.mark.parametrize("mode", ["sequential", "by-process", "tree", "mermaid"])
def test_disorder_gives_the_sorted_output(tmp_path: Path, mode: str) -> None:
    events = random_events(3, 600)
    ordered = write(tmp_path / "o.ndjson", events, 100)
    shuffled = write(tmp_path / "s.ndjson", events, 100, shuffle=300, seed=1)
    assert ordered.read_bytes() != shuffled.read_bytes()
    a, b = tmp_path / "a", tmp_path / "b"
    analyze(str(ordered), a, mode, None)
    analyze(str(shuffled), b, mode, None)
    assert a.read_bytes() == b.read_bytes()


def test_order_tiers(tmp_path: Path) -> None:
    events = random_events(5, 300)
    f = write(tmp_path / "s.ndjson", events, None, shuffle=50, seed=2)
    with Source(f) as src, pytest.raises(OutOfOrder):
        Analysis(src, order=DIRECT).run()
    for order in (WINDOWED, ALL):
        with Source(f) as src:
            an = Analysis(src, order=order)
            ts = [o[0] for chunk in an.chunks() for o in chunk]
        assert ts == sorted(ts)


def test_reorder_window_limit() -> None:
    objs: list[tuple[int, int, str, dict[str, Any]]] = [(t, t, "Lost", {}) for t in range(100)]
    late = [*objs[:60], (5, 1000, "Lost", {}), *objs[60:]]
    chunks = [(late[i:i + 10], False) for i in range(0, len(late), 10)]
    assert [o[0] for c in _reorder(chunks, window=70) for o in c] == sorted(
        o[0] for o in late)
    with pytest.raises(OutOfOrder):
        list(_reorder(chunks, window=10))


def test_far_out_of_order_file_still_analyzed(tmp_path: Path) -> None:
    events = random_events(7, 300)
    f = write(tmp_path / "o.ndjson", events, 100)
    lines = f.read_bytes().splitlines(keepends=True)
    g = tmp_path / "far.ndjson"
    g.write_bytes(lines[0] + b"".join(lines[150:]) + b"".join(lines[1:150]))  # halves swapped
    for mode in ("sequential", "tree"):
        a, b = tmp_path / f"a.{mode}", tmp_path / f"b.{mode}"
        analyze(str(f), a, mode, None)
        analyze(str(g), b, mode, None)
        assert a.read_bytes() == b.read_bytes()


def test_read_recording_keeps_its_contract(tmp_path: Path) -> None:
    events = random_events(9, 200)
    f = write(tmp_path / "o.ndjson", events, 100)
    rec = read_recording(f)
    assert rec.header is not None and rec.header.root_pid == 100 and not rec.legacy
    assert [(e.timestamp, e.KIND) for e in rec.events] == [
        (e.timestamp, e.KIND) for e in sorted(events, key=lambda e: e.timestamp)]
    assert rec.events == sorted(events, key=lambda e: e.timestamp)


def test_exec_failed_truncated_is_written_only_when_true(tmp_path: Path) -> None:
    from proctrace_bcc.codec import dumps_event

    cut, whole = ExecFailed(5, 100, "/a" * 99, 2, truncated=True), ExecFailed(6, 100, "/b", 2)
    assert orjson.loads(dumps_event(cut))["ExecFailed"]["truncated"] is True
    assert dumps_event(whole) == (b'{"ExecFailed":{"timestamp":6,"pid":100,"filename":"/b",'
                                  b'"errno":2}}\n')
    f = write(tmp_path / "x.ndjson", [Exec.from_argv(1, 100, 1, 100, ["sh"]), cut, whole], 100)
    assert [e for e in read_recording(f).events if isinstance(e, ExecFailed)] == [cut, whole]
    with Source(f) as src:
        an = Analysis(src)
        an.run()
        _, tree = an.finish()
    assert [(e.filename, e.truncated) for p in tree.processes for e in p.failed_execs] == [
        ("/a" * 99, True), ("/b", False)]


def test_bad_line_in_fast_path_names_the_line(tmp_path: Path) -> None:
    f = write(tmp_path / "o.ndjson", random_events(2, 50), None)
    lines = f.read_bytes().splitlines(keepends=True)
    lines[10] = b'{"Exec":{"timestamp":1,"pid":1,"ppid":1,"pgid":1,"cmdline":"x","argv":[{"b64":"!!"}]}}\n'
    f.write_bytes(b"".join(lines))
    with Source(f) as src, pytest.raises(RecordingError, match=r":11: bad base64 string"):
        Analysis(src, order=ALL).run()


def test_header_only_without_newline_and_truncated_only_line(tmp_path: Path) -> None:
    f = tmp_path / "h.ndjson"
    f.write_bytes(orjson.dumps({"Header": {"schema": 1}}))
    with Source(f) as src:
        an = Analysis(src)
        an.run()
        with pytest.raises(RecordingError, match="header but no events"):
            an.finish()
    f.write_bytes(b'{"Fork":{"timest')
    with Source(f) as src, pytest.raises(RecordingError, match="no complete line"):
        Analysis(src)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["by-process", "sequential"])
def test_streaming_modes_match_their_contract_form(tmp_path: Path, seed: int, mode: str) -> None:
    """render_stream (no tree, no event objects) == the same output from full objects."""
    f = write(tmp_path / "r.ndjson", random_events(seed), 100 if seed % 2 else None)
    out = tmp_path / "out"
    analyze(str(f), out, mode, None)
    rec, tree = restrict(read_recording(f), None)
    chunks = (_by_process_reference if mode == "by-process" else _sequential_reference)(
        rec, tree)
    assert out.read_bytes() == b"".join(c if isinstance(c, bytes) else c.encode()
                                         for c in chunks)


def _line(ev: Event) -> bytes:
    ((tag, body),) = event_to_obj(ev).items()
    return orjson.dumps({tag: clean(body)}, option=orjson.OPT_APPEND_NEWLINE)


def _sequential_reference(rec: Any, tree: ProcessTree) -> list[bytes]:
    """-d sequential from event objects: `rec.events` are the (already selected) events."""
    return [_line(ev) for ev in rec.events]


def _title(p: Process) -> str:
    from proctrace_bcc.render import oneline

    if p.execs:
        cmd = p.execs[0].cmdline or p.execs[0].filename or ""
        return f"PID {p.pid}: {oneline(cmd) if cmd else '<command unavailable>'}"
    parent = p.parent.pid if p.parent is not None else p.ppid
    if parent:
        if p.inherited_command:
            return f"PID {p.pid}: [fork of {parent}] {oneline(p.inherited_command)}"
        return f"PID {p.pid}: [fork of {parent}]"
    return f"PID {p.pid}: [started before the recording]"


def _by_process_reference(rec: Any, tree: ProcessTree) -> list[bytes]:
    """-d by-process from event objects and the reference tree."""
    from proctrace_bcc.tree import build_tree_with_owners

    _, owners = build_tree_with_owners(rec.events, rec.header)
    by_key = {p.key: p for p in tree.processes}
    lines_of: dict[Process | None, list[bytes]] = {}
    for ev, o in zip(rec.events, owners, strict=True):
        key = None if o is None else by_key.get(o.key)
        if o is not None and key is None:
            continue
        lines_of.setdefault(key, []).append(_line(ev))
    out: list[bytes] = []
    for p in tree.processes:
        lines = lines_of.get(p)
        if lines:
            out.append((b"\n" if out else b"") + _title(p).encode("utf-8", "surrogateescape")
                       + b"\n" + b"".join(lines))
    glob = lines_of.get(None)
    if glob:
        out.append((b"\n" if out else b"") + b"Recording:\n" + b"".join(glob))
    return out
