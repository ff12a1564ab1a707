"""The recorder's tree bookkeeping and reordering watermark, on synthetic events (no root).

`Recorder._track` follows which processes of CMD's tree are alive; a fork that a
backend delivers after its child's exit (issue 4: bpftrace under load) must not
leave the child "alive" for good, and must still be written.  `Recorder._loop`
releases events only once the backend proves it has delivered everything older.
"""

from __future__ import annotations

import time

import pytest

from proctrace_bcc import record as rec_mod
from proctrace_bcc.backends.base import Backend, BackendConfig
from proctrace_bcc.events import End, Event, Exec, Exit, Fork, StopReason
from proctrace_bcc.record import Recorder, RecordOptions

TRACER, ROOT = 100, 200


def recorder(raw: bool = False) -> Recorder:
    r = Recorder(RecordOptions(command=["cmd"], raw=raw))
    r.tracer = TRACER
    r.root_pid = ROOT
    return r


def fork(ts: int, parent: int, child: int) -> Fork:
    return Fork(ts, parent, child, parent)


def exit_(ts: int, pid: int, ppid: int = 0) -> Exit:
    return Exit(ts, pid, ppid, pid, exit_code=0)


def track(r: Recorder, *batches: list[Event]) -> list[Event]:
    """Feed batches in turn (each in timestamp order, as the reorder buffer releases them)."""
    out: list[Event] = []
    for b in batches:
        out += r._track(b)
    return out


def test_in_order_tree_is_followed_and_own_events_dropped() -> None:
    r = recorder()
    evs: list[Event] = [
        fork(1, TRACER, 999),  # the recorder's own other child: not the tree
        fork(2, TRACER, ROOT),
        Exec.from_argv(3, TRACER, 1, 1, ["python"]),  # the recorder's own exec: dropped
        fork(4, ROOT, 300),
        fork(5, 300, 301),
        exit_(6, 301),
        exit_(7, 300),
    ]
    out = track(r, evs)
    assert [type(e).__name__ for e in out] == ["Fork", "Fork", "Fork", "Exit", "Exit"]
    assert r.alive == {ROOT} and r.seen == 3 and r.root_exit is None
    track(r, [exit_(8, ROOT)])
    assert r.alive == set() and r.root_exit is not None


def test_fork_read_after_its_childs_exit_does_not_keep_the_child_alive() -> None:
    r = recorder()
    track(r, [fork(10, TRACER, ROOT)])
    late = fork(20, ROOT, 300)
    out = track(r, [exit_(30, 300)], [late], [exit_(40, ROOT)])
    assert late in out  # written all the same
    assert r.alive == set() and r.seen == 2
    assert not r._exits  # the remembered exit was used up


def test_late_root_fork_after_the_roots_exit() -> None:
    r = recorder()
    track(r, [exit_(30, ROOT)], [fork(10, TRACER, ROOT)])
    assert r.alive == set() and r.root_exit is not None and r.seen == 1


def test_children_forked_before_their_parents_late_fork_join_the_tree() -> None:
    r = recorder()
    track(r, [fork(10, TRACER, ROOT)])
    # 300's fork comes last; meanwhile 300 forked 301 (exited) and 302 (still running),
    # 302 forked 303 (running), and 300 exited.
    track(r, [fork(21, 300, 301), fork(22, 300, 302), exit_(23, 301), fork(24, 302, 303),
              exit_(25, 300)])
    assert r.alive == {ROOT} and r.seen == 1
    track(r, [fork(20, ROOT, 300)])
    assert r.alive == {ROOT, 302, 303} and r.seen == 5
    assert not r._forks and r._nforks == 0 and not r._exits
    track(r, [exit_(30, 303), exit_(31, 302), exit_(32, ROOT)])
    assert r.alive == set()


def test_an_earlier_process_with_the_same_pid_is_not_mistaken_for_the_child() -> None:
    r = recorder()
    track(r, [fork(10, TRACER, ROOT)])
    # pid 300 lived and died outside the tree; then the tree forks a new 300
    track(r, [fork(11, 1, 300), exit_(12, 300)])
    track(r, [fork(20, ROOT, 300)])
    assert r.alive == {ROOT, 300}
    # forks by the old 300 (before the new one's fork) are not the new one's children
    r2 = recorder()
    track(r2, [fork(10, TRACER, ROOT)])
    track(r2, [fork(12, 300, 301), fork(25, 300, 302)])
    track(r2, [fork(20, ROOT, 300)])
    assert r2.alive == {ROOT, 300, 302}
    assert r2._forks == {300: [(301, 12)]}
    # and forks after a remembered exit belong to a later process with that pid
    r3 = recorder()
    track(r3, [fork(10, TRACER, ROOT)])
    track(r3, [fork(21, 300, 301), exit_(22, 300), fork(40, 300, 302)])
    track(r3, [fork(20, ROOT, 300)])
    assert r3.alive == {ROOT, 301}
    assert r3._forks == {300: [(302, 40)]}


def test_raw_mode_counts_every_fork_once() -> None:
    r = recorder(raw=True)
    track(r, [fork(10, TRACER, ROOT), fork(11, 1, 500), fork(22, 300, 301)])
    assert r.seen == 3 and r.alive == {ROOT}
    track(r, [fork(20, ROOT, 300)])  # 300's earlier child 301 is placed, not counted again
    assert r.seen == 4 and r.alive == {ROOT, 300, 301}


def test_without_a_command_nothing_is_remembered() -> None:
    r = Recorder(RecordOptions(command=[], raw=True))
    r.tracer = TRACER
    track(r, [fork(1, 1, 2), exit_(2, 2), exit_(3, 7)])
    assert r.seen == 1 and not r._exits and not r._forks and r.alive == set()


def test_remembered_exits_and_forks_are_bounded_in_number(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec_mod, "UNPLACED_MAX", 3)
    r = recorder()
    track(r, [fork(1, TRACER, ROOT)])
    track(r, [exit_(10 + i, 300 + i) for i in range(5)])  # the 3 newest stay
    assert list(r._exits) == [302, 303, 304]
    track(r, [fork(20, 400, 401), fork(21, 400, 402), fork(22, 410, 411), fork(23, 420, 421)])
    assert r._nforks == 3  # the oldest fork went
    assert r._forks == {410: [(411, 22)], 420: [(421, 23)], 400: [(402, 21)]}


def test_remembered_exits_and_forks_are_forgotten_with_age(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec_mod, "UNPLACED_NS", 1000)
    r = recorder()
    track(r, [fork(1, TRACER, ROOT)])
    track(r, [exit_(10, 300), exit_(20, 301)])
    track(r, [fork(12, 420, 421), fork(15, 400, 401), fork(25, 410, 411), fork(30, 420, 422)])
    assert r._nforks == 4
    # older than UNPLACED_NS before the newest event released: forgotten
    track(r, [exit_(1018, 302)])
    assert r._exits == {301: 20, 302: 1018}
    assert r._forks == {410: [(411, 25)], 420: [(422, 30)]} and r._nforks == 2


def test_an_exit_is_remembered_at_its_latest_time() -> None:
    r = recorder()
    track(r, [fork(1, TRACER, ROOT)])
    # pid 300 reused outside the tree (its fork is written: --raw)
    track(r, [exit_(5, 300), exit_(6, 301), fork(7, 1, 300), exit_(9, 300)])
    assert list(r._exits.items()) == [(301, 6), (300, 9)]


def test_the_twin_of_an_exit_is_dropped() -> None:
    """Two threads can both report the process's end (both read `signal->live` as 0);
    the second Exit of a pid, with no fork of it between, is not written."""
    r = recorder()
    track(r, [fork(1, TRACER, ROOT), fork(2, ROOT, 300)])
    first = exit_(10, 300)
    out = track(r, [first, exit_(11, 300)], [exit_(12, 300)])
    assert out == [first] and r.alive == {ROOT}
    # a fork of the pid ends it: the next process with that pid exits once too
    out = track(r, [fork(20, ROOT, 300), exit_(21, 300), exit_(22, 300)])
    assert [type(e).__name__ for e in out] == ["Fork", "Exit"] and r.alive == {ROOT}
    # a late fork (stamped before the exit) does not
    out = track(r, [exit_(31, 301)], [fork(29, ROOT, 301), exit_(32, 301)])
    assert [type(e).__name__ for e in out] == ["Exit", "Fork"] and r.alive == {ROOT}
    # the root's twin leaves root_exit the first
    root_exit = exit_(40, ROOT)
    track(r, [root_exit, exit_(41, ROOT)])
    assert r.root_exit is root_exit and r.alive == set()


def test_ended_pids_are_forgotten_with_age(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec_mod, "TWIN_EXIT_NS", 1000)
    r = recorder()
    track(r, [fork(1, TRACER, ROOT), exit_(10, 300), exit_(500, 301)])
    assert list(r._ended) == [300, 301]
    track(r, [exit_(1200, 302)])
    assert list(r._ended) == [301, 302]
    # an Exit after that long is written again (not a twin: a pid reused unseen)
    assert len(track(r, [exit_(2600, 301)])) == 1


# ---------------------------------------------------------------------------
# The watermark: nothing is released before the backend proves it has it all


class ScriptedBackend(Backend):
    """Returns scripted events per poll and a scripted synced_until()."""

    name = "scripted"

    def __init__(self, polls: list[tuple[list[Event], int | None]], rec: Recorder) -> None:
        super().__init__(BackendConfig(tracer_pid=None))
        self.polls = polls
        self.rec = rec
        self.n = 0
        self.proven: int | None = None

    def start(self) -> None:
        pass

    def poll(self, timeout_ms: int) -> list[Event]:
        evs, self.proven = self.polls[self.n]
        self.n += 1
        if self.n == len(self.polls):
            self.rec.stop.reason = StopReason.INTERRUPTED  # the loop ends after this cycle
        return evs

    def drain(self) -> list[Event]:
        return []

    def synced_until(self) -> int | None:
        return self.proven

    def close(self) -> None:
        pass


class SpyWriter:
    failed: OSError | None = None  # RecordingWriter's failure state: never fails here
    unwritten = 0
    path = "spy"

    def __init__(self, backend: ScriptedBackend) -> None:
        self.backend = backend
        self.written: list[tuple[int, Event]] = []  # (polls done, event)

    def write_many(self, evs: list[Event]) -> None:
        self.written += [(self.backend.n, e) for e in evs]

    def write(self, ev: Event) -> None:
        self.written.append((self.backend.n, ev))

    def flush(self, sync: bool = True) -> None:
        pass

    def write_last(self, ev: Event) -> bool:
        self.write(ev)
        return True


def run_loop(polls: list[tuple[list[Event], int | None]]) -> list[tuple[int, Event]]:
    r = Recorder(RecordOptions(command=[], raw=True))
    r.tracer = TRACER
    r.t0 = 0  # timestamps are absolute CLOCK_MONOTONIC, as from a backend
    b = ScriptedBackend(polls, r)
    w = SpyWriter(b)
    r._loop(b, w)  # type: ignore[arg-type]
    return w.written


def test_the_watermark_waits_for_the_backends_proof() -> None:
    t = time.monotonic_ns()
    a, late = fork(t - 2000, 1, 2), fork(t - 3000, 1, 3)  # `late` comes after `a`
    written = run_loop([([a], 0), ([], 0), ([], 0), ([late], t), ([], t), ([], t)])
    # nothing released before the proof; then both, in timestamp order
    assert written[:2] == [(4, late), (4, a)]
    assert isinstance(written[-1][1], End) and len(written) == 3


def test_without_a_proof_the_previous_cycle_is_the_watermark() -> None:
    t = time.monotonic_ns()
    a = fork(t - 2000, 1, 2)
    written = run_loop([([a], None), ([], None), ([], None)])
    assert written[0] == (2, a) and len(written) == 2  # released one cycle after it came
