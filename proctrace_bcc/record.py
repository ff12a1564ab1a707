"""`record`: attach a backend, run CMD, follow its tree, stream events to disk.

The recording loop and its stop rules.  Its parts: backends/select.py (which
backend), child.py (CMD and what ends it), reorder.py (events per CPU, out of
order, released in timestamp order once the backend proves it has delivered
everything older), status.py (the live status line), tracefs.py.

Should an event still come after its turn, `_track` keeps the tree's
membership right (a fork read after its child's exit).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

from proctrace_bcc import __version__, envvars, lineage, safe_open, snapshot, tracefs
from proctrace_bcc.backends.base import Backend, BackendConfig
from proctrace_bcc.backends.select import check_name, make_backend, start_backend
from proctrace_bcc.cgroup import Cgroup, Signals, Tree
from proctrace_bcc.child import Child, Invoker, end_tree, resolve
from proctrace_bcc.errors import RecorderError, UsageError
from proctrace_bcc.events import (
    End,
    Event,
    Exit,
    FdSnapshot,
    Fork,
    Header,
    Lost,
    SnapshotTrigger,
    StopReason,
)
from proctrace_bcc.procfs import running, snapshot_fds
from proctrace_bcc.reorder import Reorder, watermark
from proctrace_bcc.safe_open import Opened
from proctrace_bcc.status import StatusLine
from proctrace_bcc.writer import RecordingWriter

POLL_MS = 100
# After a poll that brought events, the next one waits at most this long: a busy tree's
# events reach the file sooner, so a SIGKILL of the recorder loses less of them
# (bench/sigkill_loss.py; README, "Reliability").
POLL_BUSY_MS = 20
SYNC_NS = 1_000_000_000  # fsync the recording at most once a second while recording
TIMEOUT_EXIT = 124  # like timeout(1): CMD was still running when --timeout fired
EXITS_S = 2.0  # after ending processes, wait at most this long for their Exit events
# Exits and forks not (yet) placed in the tree, kept for a fork that comes late.
UNPLACED_MAX = 65536
UNPLACED_NS = 30_000_000_000
# Two threads of a process can both see its last thread gone (`signal->live` read at
# the exit tracepoint, after both decremented it): the second Exit of a pid with no
# fork of it between is dropped, if it comes within this long (a pid is reused only
# after its zombie is reaped, which is after every thread's exit tracepoint).
TWIN_EXIT_NS = 1_000_000_000


@dataclass(slots=True)
class RecordOptions:
    command: list[str]
    output: Path = Path("proctrace.ndjson")
    backend: str = "auto"
    raw: bool = False
    timeout: float | None = None
    grace: float | None = None
    as_root: bool = False
    fds: bool = False
    buffer_pages: int = 256
    argv_max: int = 49152
    bpftrace_path: str | None = None
    quiet: bool = False
    print_bpf: bool = False
    kill_leftovers: bool = False
    cache: bool = True  # BCC: load the compiled program from the cache (--no-cache: compile)
    # record --env options as given (envvars.choose: names, `tests` for the runners' set)
    env: list[str] | None = None
    # For tests and embedding: where status/warnings go.
    stderr: TextIO | None = field(default=None, repr=False)


# ---------------------------------------------------------------------------
# The recording loop


class _Stop:
    """A stop asked for by signals (SIGINT, SIGTERM, SIGHUP): why, and how many came.

    While the loop runs, a signal only asks (`pending`): the loop takes the hang
    snapshot first, then passes it on to CMD (SIGUSR1: the snapshot only)."""

    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self.signals = 0
        self.deferred = False  # the loop answers signals (else: passed on at once)
        self.pending: list[int] = []

    def signalled(self, signum: int) -> None:
        self.signals += 1
        self.reason = StopReason.INTERRUPTED if signum == signal.SIGINT else StopReason.TERMINATED


class Recorder:
    def __init__(self, opts: RecordOptions) -> None:
        self.opts = opts
        self.stop = _Stop()
        self.alive: set[int] = set()  # pids of the tree currently alive (recorder's ns)
        # Not (yet) in the tree, in case a fork placing them comes late (see _track):
        self._exits: dict[int, int] = {}  # pid -> exit time
        self._forks: dict[int, list[tuple[int, int]]] = {}  # parent -> [(child, fork time)]
        self._nforks = 0
        self._ended: dict[int, int] = {}  # pid -> time of its Exit, for TWIN_EXIT_NS
        self.seen = 0
        self.events = 0
        self.lost = 0
        self.root_pid: int | None = None
        self.root_exit: Exit | None = None
        self.t0 = 0
        self.tracer = os.getpid()
        self.child: Child | None = None  # CMD, once started
        self.tree: Tree = Signals(lambda: self.alive)  # how CMD's tree is ended (_start_cmd)
        self._told_write_error = False
        self._liveness_at = 0.0
        self.status_line = StatusLine(
            (not opts.quiet) and sys.stderr.isatty() and opts.stderr is None)

    # -- signals ---------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGUSR1:
            self.stop.signalled(signum)
        if self.stop.deferred:
            self.stop.pending.append(signum)
        else:
            self._forward([signum])

    def _answer_signals(self, reorder: Reorder) -> None:
        """Signals that came since the last cycle: one hang snapshot, then each is
        passed on to CMD (SIGUSR1: only the snapshot)."""
        pending, self.stop.pending = self.stop.pending, []
        triggers: dict[int, SnapshotTrigger] = {signal.SIGUSR1: SnapshotTrigger.REQUEST,
                                                 signal.SIGINT: SnapshotTrigger.INTERRUPT}
        trigger = triggers.get(pending[0], SnapshotTrigger.TERMINATE)
        self._hang_snapshot(reorder, trigger)
        self._forward(pending)

    def _undefer(self) -> None:
        """Signals are passed on as they come again (those asked for meanwhile: now)."""
        self.stop.deferred = False
        pending, self.stop.pending = self.stop.pending, []
        self._forward(pending)

    def _forward(self, signums: list[int]) -> None:
        for signum in signums:
            if self.child is not None and signum != signal.SIGUSR1:
                self.child.forward(signum)

    def _hang_snapshot(self, reorder: Reorder, trigger: SnapshotTrigger) -> None:
        """ProcState events of every live process of the tree (snapshot.py), in order:
        the tree's cgroup says who is in it now (`alive` lags by the reorder window)."""
        pids = self.alive | set(self.tree.members())
        snap = snapshot.take(pids, self.root_pid, trigger, self.t0, self.opts.fds)
        reorder.add(list(snap.states))
        if snap.skipped and not self.opts.quiet:
            self._say(f"hang snapshot: {snap.skipped} of {len(pids)} processes left out "
                      f"(at most {snapshot.SNAPSHOT_MAX}, {snapshot.SNAPSHOT_S:g} s)")

    # -- events --------------------------------------------------------------

    def _rebase(self, evs: list[Event]) -> list[Event]:
        for ev in evs:
            ev.timestamp = max(0, ev.timestamp - self.t0)
        return evs

    def _track(self, evs: list[Event]) -> list[Event]:
        """Follow the tree's membership (events in timestamp order); drop our own events.

        Every event but the twin of an Exit (TWIN_EXIT_NS) is passed on (written),
        whatever it does to `alive`.  Should a fork still come after events it
        precedes (a backend that delivered it late), membership stays right: the
        exit of a pid not in the tree and a fork whose parent is not in it are
        remembered for a while (UNPLACED_NS, at most UNPLACED_MAX of each), and
        when a late fork places that pid in the tree, an exit stamped at or after
        the fork means it is gone, and the forks it made before its exit join the
        tree too (recursively).
        """
        out: list[Event] = []
        ended = self._ended
        for ev in evs:
            if isinstance(ev, Fork):
                if ended.get(ev.child_pid, ev.timestamp) <= ev.timestamp:
                    ended.pop(ev.child_pid, None)  # a new process (a late fork is older)
                if ev.parent_pid == self.tracer:
                    if self.root_pid is None or ev.child_pid != self.root_pid:
                        continue
                    self._join(ev.child_pid, ev.timestamp)
                elif ev.parent_pid in self.alive:
                    self._join(ev.child_pid, ev.timestamp)
                else:
                    if self.opts.raw:
                        self.seen += 1
                    if self.root_pid is not None:
                        self._forks.setdefault(ev.parent_pid, []).append(
                            (ev.child_pid, ev.timestamp))
                        self._nforks += 1
            elif isinstance(ev, Exit):
                if ev.timestamp - ended.get(ev.pid, -TWIN_EXIT_NS) < TWIN_EXIT_NS:
                    continue  # its twin
                ended.pop(ev.pid, None)  # re-inserted last: the dict stays in age order
                ended[ev.pid] = ev.timestamp
                if ev.pid in self.alive:
                    self.alive.discard(ev.pid)
                elif self.root_pid is not None:
                    self._exits.pop(ev.pid, None)  # re-inserted last: the dict stays in age order
                    self._exits[ev.pid] = ev.timestamp
                if ev.pid == self.root_pid:
                    self.root_exit = ev
            elif isinstance(ev, Lost):
                self.lost += ev.count
            elif getattr(ev, "pid", None) == self.tracer:
                continue
            out.append(ev)
        if evs:
            self._prune(evs[-1].timestamp)
        return out

    def _join(self, pid: int, forked: int) -> None:
        """`pid`, forked at `forked`, is in the tree (and so are its unplaced children)."""
        placed = lineage.join(self.alive, self._exits, self._forks, pid, forked)
        self._nforks -= placed
        self.seen += 1 if self.opts.raw else 1 + placed  # --raw counted every fork as it came

    def _prune(self, newest: int) -> None:
        """Forget unplaced exits and forks older than UNPLACED_NS, or the oldest beyond
        UNPLACED_MAX (and ended pids older than TWIN_EXIT_NS)."""
        lineage.forget_older(self._ended, newest - TWIN_EXIT_NS, UNPLACED_MAX)
        self._nforks = lineage.prune(self._exits, self._forks, self._nforks,
                                     newest - UNPLACED_NS, UNPLACED_MAX)

    def _status(self, root_reaped_at: float | None) -> None:
        """The status line (status.py says when it is drawn)."""
        if self.child is None:
            self.status_line.counts(self.seen, len(self.alive), self.events, self.lost)
        elif root_reaped_at is not None:
            self.status_line.waiting(
                Path(self.opts.command[0]).name, self.child.status(),
                root_reaped_at - self.t0 / 1e9, sorted(self.alive - {self.root_pid}))

    # -- main ----------------------------------------------------------------

    def run(self) -> int:
        o = self.opts
        check_name(o.backend)
        if o.timeout is not None and o.timeout <= 0:
            raise UsageError("--timeout must be positive")
        config = BackendConfig(
            tracer_pid=None if (o.raw or not o.command) else self.tracer,
            fds=o.fds, argv_max=o.argv_max, buffer_pages=o.buffer_pages,
            bpftrace_path=o.bpftrace_path, env=envvars.choose(o.env), cache=o.cache,
        )
        if o.print_bpf:
            sys.stdout.write(make_backend(o.backend, config).program_text())
            return 0
        inv = Invoker.from_env(o.as_root)
        if o.command:
            resolve(o.command[0], inv)  # before loading anything: 127/126 as a shell says
        if os.geteuid() != 0:
            raise RecorderError("recording needs root (CAP_BPF and CAP_PERFMON): run it with sudo")
        tracefs.ensure_mounted()
        writer, opened, cmd_stdout = self._open_output(inv)
        backend: Backend | None = None
        old = {s: signal.signal(s, self._on_signal)
               for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)}
        old[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _wake)
        try:
            started = time.monotonic()
            backend = start_backend(o.backend, config, o.stderr)
            self.t0 = time.monotonic_ns()
            self.tracer = backend.tracer_tgid or self.tracer
            header = Header(
                version=__version__, backend=backend.name, kernel=platform.release(),
                hostname=socket.gethostname(), command=list(o.command) or None,
                root_pid=None, raw=o.raw or not o.command,
                start_time=_dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds"),
                options={"timeout": o.timeout, "grace": o.grace, "fds": o.fds,
                         "buffer_pages": o.buffer_pages,
                         "startup_s": round(time.monotonic() - started, 4),
                         **({"env": list(config.env)} if config.env else {})},
            )
            if self.stop.reason is not None:  # interrupted while the probes loaded
                writer.write_header(header)
                writer.write(End(0, self.stop.reason, [], None, 0))
                return 128 + signal.SIGINT if self.stop.reason == StopReason.INTERRUPTED else 143
            self.stop.deferred = True  # from CMD's start, the loop answers signals
            if o.command:
                self.child = self._start_cmd(inv, cmd_stdout)
                self.root_pid = header.root_pid = self.child.pid
            # From here on nothing may abandon CMD: a write failure is not an error
            # (writer.py), and any other one waits for CMD (_wait_for_cmd).
            writer.write_header(header)
            return self._loop(backend, writer)
        except BaseException as exc:
            if writer.events_written == 0 and not writer.header_written:
                # Nothing recorded (the backend did not start): leave no empty file
                # (removed while the writer still holds it: remove() compares the name
                # with the open descriptor).
                if opened is not None:
                    opened.remove()
                writer.close()
            elif self.child is not None and self.child.running():
                self._undefer()
                if backend is not None:
                    backend.close()
                self._wait_for_cmd(exc)
            raise
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if backend is not None:
                backend.close()
            self.tree.close()
            writer.close()
            if opened is not None:
                opened.close_dir()
            self.status_line.clear()

    def _say(self, line: str) -> None:
        """One line for the person running us (never fails: stderr may be gone)."""
        with contextlib.suppress(OSError, ValueError):
            err = self.opts.stderr or sys.stderr
            err.write(f"proctrace-bcc: {line}\n")
            err.flush()

    def _open_output(self, inv: Invoker) -> tuple[RecordingWriter, Opened | None, int | None]:
        """The recording's writer, the file it opened (to remove it if nothing gets
        recorded) and what CMD gets as stdout.  The file is opened by safe_open's rules,
        as the user behind sudo (open_as); `-`, /dev/stdout and /dev/fd/N are used as
        given: with the recording on our stdout, CMD's stdout is our stderr, so that
        its output does not land in the recording."""
        path = str(self.opts.output)
        given = safe_open.given_fd(path)
        try:
            if given == 2:
                raise safe_open.Unsafe("stderr carries the recorder's messages and CMD's")
            if given is not None:
                writer = RecordingWriter(os.dup(given), path, opened=False)
                if given == 1 and self.opts.command and not self.opts.quiet:
                    self._say("the recording goes to stdout: CMD's stdout goes to stderr")
                return writer, None, 2 if given == 1 else None
            if inv.user is not None:
                opened = safe_open.open_as(path, inv.user, self._say)
            else:
                opened = safe_open.open_stream(path, self._say)
        except safe_open.Unsafe as exc:
            raise RecorderError(f"cannot write {path}: {exc}") from None
        except OSError as exc:
            raise RecorderError(f"cannot write {path}: {exc.strerror or exc}") from None
        return RecordingWriter(opened.fd, path), opened, None

    def _start_cmd(self, inv: Invoker, stdout: int | None) -> Child:
        """CMD, in a cgroup of its own when possible (cgroup.py: how its tree is ended)."""
        cg, why = Cgroup.create()
        try:
            child = Child(self.opts.command, inv, stdout, cg.join_preexec() if cg else None)
        except BaseException:
            if cg is not None:
                cg.close()
            raise
        if cg is not None and not cg.holds(child.pid):
            cg.close()
            cg, why = None, "CMD could not join it (kernel older than 5.16?)"
        if cg is None and not self.opts.quiet:
            self._say(f"no cgroup for CMD ({why}): its tree is stopped by signals to each "
                      "process")
        self.tree = cg if cg is not None else Signals(lambda: self.alive)
        return child

    def _wait_for_cmd(self, exc: BaseException) -> None:
        """The policy for a failure after CMD started (README, "Reliability"): tracing
        stops, CMD is not abandoned: we wait for it (signals still passed on)."""
        assert self.child is not None
        self._say(f"error: {exc or type(exc).__name__}; no longer recording: waiting for CMD "
                  f"(pid {self.child.pid}) to end")
        self.child.proc.wait()

    def _loop(self, backend: Backend, writer: RecordingWriter) -> int:
        reorder = Reorder()
        start = time.monotonic()
        prev_cycle: int | None = None
        root_reaped_at: float | None = None
        stop_at: float | None = None
        last_sync = time.monotonic_ns()  # write_header has just synced the header
        busy = False
        while True:
            cycle = time.monotonic_ns()
            reaped_now = (self.child is not None and root_reaped_at is None
                          and not self.child.running())
            if reaped_now:
                root_reaped_at = time.monotonic()
            # CMD just ended: take what is there and go on to the stop check (SIGCHLD,
            # see run(), cuts short a poll that was waiting when it ended).
            got = backend.poll(0 if reaped_now else POLL_BUSY_MS if busy else POLL_MS)
            busy = bool(got)
            reorder.add(self._rebase(got))
            if self.stop.pending:
                self._answer_signals(reorder)
            if prev_cycle is not None:
                mark = watermark(prev_cycle, backend.synced_until())
                ready = self._track(reorder.pop_until(mark - self.t0))
                writer.write_many(ready)
                self.events += len(ready)
                # to the OS every cycle; to the disk once a second (fsync costs ms here)
                sync = cycle - last_sync >= SYNC_NS
                writer.flush(sync=sync)
                self._note_write_error(writer)
                if sync:
                    last_sync = cycle
            prev_cycle = cycle
            self._status(root_reaped_at)
            now = time.monotonic()
            reason = self._should_stop(backend, now - start, root_reaped_at, now)
            if reason == StopReason.EXITED and self.stop.reason is not None:
                reason = self.stop.reason  # the tree ended because we were interrupted
            if reason is None and self.stop.reason is not None:
                if stop_at is None:
                    stop_at = now + 2.0  # let the tree react to the signal, briefly
                if self.stop.signals > 1 or now >= stop_at or not self.alive:
                    reason = self.stop.reason
            if reason is not None:
                break
        self._undefer()
        if reason == StopReason.TIMEOUT:
            self._hang_snapshot(reorder, SnapshotTrigger.TIMEOUT)
        # Everything emitted before now is in the buffers: take it all (a tree that
        # exited has nothing in flight; otherwise give other CPUs' writes a moment).
        if reason != StopReason.EXITED:
            time.sleep(0.01)
        self._write_rest(backend, reorder, writer)
        if reason == StopReason.EXITED and backend.tracked() == 0:
            self.alive.clear()  # the kernel says none is left: those exits were lost
        if self.opts.fds:
            self._snapshot_fds(writer)
        running = sorted(self.alive)  # when recording stopped, before anything is ended
        status, ended = self._finish_cmd(reason)
        if ended:
            self._wait_for_exits(backend, reorder, writer, ended)
        end_ts = max(0, time.monotonic_ns() - self.t0)
        writer.flush()
        self._note_write_error(writer)
        # After a write failure End says so, counting what was not written as lost.
        failed = writer.failed is not None
        kept = writer.write_last(End(end_ts, StopReason.WRITE_ERROR if failed else reason,
                                     running, status, self.lost + writer.unwritten))
        if writer.failed is not None:
            self._note_write_error(writer)
            self._say(f"error: the recording {writer.path} is incomplete: "
                      f"{writer.unwritten} events not written; "
                      + ("it ends with End (reason write_error)" if kept
                         else "its End could not be written either"))
        return status if status is not None else 0

    def _note_write_error(self, writer: RecordingWriter) -> None:
        """Say once that writing failed (the writer goes on counting, CMD goes on)."""
        if writer.failed is not None and not self._told_write_error:
            self._told_write_error = True
            self._say(f"error: cannot write {writer.path}: "
                      f"{writer.failed.strerror or writer.failed}; recording stops here, "
                      "CMD goes on (what is not written is counted)")

    def _write_rest(self, backend: Backend, reorder: Reorder, writer: RecordingWriter) -> None:
        """Everything the backend has, and the reorder window, written in order."""
        reorder.add(self._rebase(backend.drain()))
        rest = self._track(reorder.pop_until(None))
        writer.write_many(rest)
        self.events += len(rest)

    def _wait_for_exits(self, backend: Backend, reorder: Reorder, writer: RecordingWriter,
                        ended: set[int]) -> None:
        """The Exit events of the processes we ended: once none of them runs (EXITS_S at
        most), each one's exit has been submitted; take them all."""
        deadline = time.monotonic() + EXITS_S
        waiting = ended & self.alive
        while waiting and time.monotonic() < deadline:
            reorder.add(self._rebase(backend.poll(10)))
            waiting = {p for p in waiting if running(p)}
        self._write_rest(backend, reorder, writer)

    def _snapshot_fds(self, writer: RecordingWriter) -> None:
        """Descriptors of every process of the tree still alive (the hang case)."""
        for pid in sorted(self.alive):
            fds = snapshot_fds(pid)
            if fds is not None:
                ts = max(0, time.monotonic_ns() - self.t0)
                writer.write(FdSnapshot(ts, pid, fds))
                self.events += 1

    def _should_stop(self, backend: Backend, elapsed: float, root_reaped_at: float | None,
                     now: float) -> StopReason | None:
        o = self.opts
        if o.timeout is not None and elapsed >= o.timeout:
            return StopReason.TIMEOUT
        if not o.command or root_reaped_at is None:
            return None
        # alive is updated in timestamp order: once the root's exit is processed and
        # nothing is alive, every descendant's fork (earlier than its parent's exit)
        # has been seen too.  Before that, the kernel's own count at zero (CMD reaped)
        # proves the same: each exit is submitted before its pid leaves the count, so
        # the final drain has every event (no waiting for the reorder window).
        if self.root_exit is None or not self.alive:
            tracked = backend.tracked()
            if tracked == 0 or (tracked is None and self.root_exit is not None):
                return StopReason.EXITED
        if now - self._liveness_at >= 1.0:
            # Once a second, while processes seem to run: their exits may have been
            # lost, or still be held back (events of a CPU not synced yet); the
            # kernel's count at zero ends it as above.  Only when events were lost, a
            # backend without an authoritative count (None) is judged from /proc.
            self._liveness_at = now
            tracked = backend.tracked()
            if tracked == 0 or (tracked is None and self.lost and not any(
                    Path(f"/proc/{pid}").exists() for pid in self.alive)):
                self.alive.clear()
                return StopReason.EXITED
        if o.grace is not None and now - root_reaped_at >= o.grace:
            return StopReason.GRACE
        return None

    def _finish_cmd(self, reason: StopReason) -> tuple[int | None, set[int]]:
        """End what this stop ends (README): with --kill-leftovers the whole tree at once
        (child.end_tree), else CMD itself on --timeout and signals (child.end, its tree
        frozen meanwhile).  CMD's status, and the pids signalled."""
        child = self.child
        if child is None:
            return None, set()
        # Whether CMD still ran when recording stopped, before --kill-leftovers: ending
        # its tree makes CMD exit, and `record` must still say 124 for a timeout.
        cmd_running = child.running()
        ended: set[int] = set()
        if self.opts.kill_leftovers and reason != StopReason.EXITED:
            ended = end_tree(self.tree)
        if cmd_running and reason in (StopReason.TIMEOUT, StopReason.INTERRUPTED,
                                      StopReason.TERMINATED):
            if child.running():
                ended.add(child.pid)
                child.end(self.tree)
            if reason == StopReason.TIMEOUT:
                return TIMEOUT_EXIT, ended
        return child.status(), ended


def _wake(signum: int, frame: FrameType | None) -> None:
    """SIGCHLD: nothing to do; being a Python handler, it interrupts the backend's poll
    (no SA_RESTART), so the loop notices CMD's end at once."""


def run_record(opts: RecordOptions) -> int:
    return Recorder(opts).run()
