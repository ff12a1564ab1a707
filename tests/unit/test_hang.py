"""Hang snapshot analysis (proctrace_bcc.hang) on hand-built trees and ProcState events.

The ProcState events are built as `record` writes them at a hang snapshot
(docs/format.md); tests/kernel/test_leak_endings.py checks a real one.
"""

from __future__ import annotations

from collections.abc import Sequence

from proctrace_bcc.events import Event, Exit, Fork, ProcState
from proctrace_bcc.hang import CHILD, OTHER, PIPE_READ, analyze_hang, hang_sentences, heading
from proctrace_bcc.render import fds as render_fds
from proctrace_bcc.tree import ProcessTree, build_tree
from tests.unit.test_fds import STD, Script, pipe_r, pipe_w

MS = 1_000_000


def _text(tree: ProcessTree, events: Sequence[object]) -> list[str]:
    rep = analyze_hang(tree, events)
    assert rep is not None
    return ["  " * d + render_fds.text(line) for d, line in hang_sentences(rep)]


def _bats() -> tuple[ProcessTree, list[object]]:
    """bats (100) -> validator fork (105, reads P on fd 0); bats-exec-test (103) exited;
    python3 (104) holds P's write end at fd 3."""
    s = Script(100)
    s.events.append(Fork(0, 50, 100, 100, 100, 1))
    s.exec(100, 50, ["bats", "t.bats"], STD)
    s.fork(100, 105)
    s.fork(100, 103)
    s.exec(103, 100, ["bats-exec-test"], [*STD, pipe_w(3, 900)])
    s.fork(103, 104)
    s.exec(104, 103, ["python3", "-c", "import time; time.sleep(120)"], [*STD, pipe_w(3, 900)])
    s.exit(103, 100)
    tree = build_tree(s.events, None)
    t = 5000 * MS
    states: list[object] = [
        ProcState(t, 100, "timeout", "S", "do_wait", ["do_wait", "kernel_wait4"], list(STD)),
        ProcState(t, 105, "timeout", "S", "anon_pipe_read", ["anon_pipe_read", "vfs_read", "ksys_read"],
           [pipe_r(0, 900), *STD[1:]]),
        ProcState(t, 104, "timeout", "S", "hrtimer_nanosleep", ["hrtimer_nanosleep"],
           [*STD, pipe_w(3, 900)]),
    ]
    return tree, states


def test_bats_blocked_on_the_pipe_names_its_only_writer() -> None:
    tree, states = _bats()
    rep = analyze_hang(tree, states)
    assert rep is not None and rep.trigger == "timeout"
    kinds = {b.process.pid: b.kind for b in rep.processes}
    assert kinds == {100: CHILD, 105: PIPE_READ, 104: OTHER}
    (reader,) = [b for b in rep.processes if b.process.pid == 105]
    assert reader.pipes[0][0] == "pipe:[900]" and [q.pid for q in reader.waits_for] == [104]
    assert _text(tree, states) == [
        "bats (pid 100) is blocked in do_wait for bats (pid 105).",
        "  bats (pid 105) is blocked in anon_pipe_read on pipe:[900]; its only writer still "
        "open is "
        "python3 (pid 104).",
        "    python3 (pid 104) is blocked in hrtimer_nanosleep.",
    ]
    assert heading(rep, tree.start).startswith("Hang snapshot when --timeout fired at +")


def test_make_waits_for_cc1_in_futex_wait() -> None:
    s = Script(100)
    s.events.append(Fork(0, 50, 100, 100, 100, 1))
    s.exec(100, 50, ["make", "-j2"], STD)
    s.fork(100, 101)
    s.exec(101, 100, ["cc1", "x.c"], STD)
    tree = build_tree(s.events, None)
    t = 9000 * MS
    states: list[object] = [
        ProcState(t, 100, "interrupt", "S", "do_wait", None, None),
        # 6.18 names it futex_do_wait: not a wait for a child
        ProcState(t, 101, "interrupt", "S", "futex_do_wait", ["futex_do_wait", "futex_wait"]),
    ]
    assert _text(tree, states) == [
        "make (pid 100) is blocked in do_wait for cc1 (pid 101), which is in futex_do_wait.",
        "  cc1 (pid 101) is blocked in futex_do_wait.",
    ]


def test_last_snapshot_wins_and_dead_processes_are_skipped() -> None:
    tree, states = _bats()
    early = [ProcState(1000 * MS, 100, "request", "R", None, None, None)]
    rep = analyze_hang(tree, [*early, *states])
    assert rep is not None and rep.trigger == "timeout" and len(rep.processes) == 3
    # A ProcState of a pid the tree does not have alive then is ignored.
    ghost = ProcState(5000 * MS, 103, "timeout", "S", "pipe_write", None, None)
    rep = analyze_hang(tree, [*states, ghost])
    assert rep is not None and 103 not in {b.process.pid for b in rep.processes}


def test_no_snapshot_and_a_writer_without_readers() -> None:
    tree, _ = _bats()
    assert analyze_hang(tree, [Exit(1, 100, 50, 100, exit_code=0)]) is None
    lone = [ProcState(5000 * MS, 104, "terminate", "S", "pipe_write", ["pipe_write"],
               [pipe_w(1, 901)])]
    assert _text(tree, lone) == [
        "python3 (pid 104) is blocked in pipe_write on pipe:[901]; no other process of the "
        "tree holds its read end."]


def test_states_ignores_other_events() -> None:
    from proctrace_bcc.hang import states

    evs: list[Event] = [Exit(1, 100, 50, 100, exit_code=0)]
    assert states(evs) == []
