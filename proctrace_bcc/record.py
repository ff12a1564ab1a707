"""`record`: attach a backend, run CMD, follow its tree, stream events to disk.

Events reach us per CPU, out of order; a reorder buffer releases them in
timestamp order once they are older than the start of the previous poll
cycle and than what the backend proves it has delivered
(`Backend.synced_until()`: bpftrace's per-CPU handshakes); nothing is held
back for more than about two poll intervals unless the backend lags.
Should an event still come after its turn, `_track` keeps the tree's
membership right (a fork read after its child's exit).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import heapq
import itertools
import os
import platform
import pwd
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

from proctrace_bcc import __version__, lineage
from proctrace_bcc.backends.base import Backend, BackendConfig
from proctrace_bcc.errors import BackendUnavailable, RecorderError, UsageError
from proctrace_bcc.events import End, Event, Exit, FdSnapshot, Fork, Header, Lost
from proctrace_bcc.procfs import snapshot_fds
from proctrace_bcc.writer import RecordingWriter

POLL_MS = 100
SYNC_NS = 1_000_000_000  # fsync the recording at most once a second while recording
BACKENDS = ("auto", "bcc", "bpftrace")
TIMEOUT_EXIT = 124  # like timeout(1): CMD was still running when --timeout fired
# Exits and forks not (yet) placed in the tree, kept for a fork that comes late.
UNPLACED_MAX = 65536
UNPLACED_NS = 30_000_000_000


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
    # For tests and embedding: where status/warnings go.
    stderr: TextIO | None = field(default=None, repr=False)


# ---------------------------------------------------------------------------
# Backends


def make_backend(name: str, config: BackendConfig) -> Backend:
    if name == "bcc":
        from proctrace_bcc.backends.bcc import BccBackend

        return BccBackend(config)
    if name == "bpftrace":
        import importlib

        try:
            mod = importlib.import_module("proctrace_bcc.backends.bpftrace")
        except ImportError:
            raise BackendUnavailable("bpftrace", "this build has no bpftrace backend") from None
        backend: Backend = mod.BpftraceBackend(config)
        return backend
    raise UsageError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")


def start_backend(name: str, config: BackendConfig, warn: TextIO | None) -> Backend:
    """Start the named backend; `auto` tries BCC, then bpftrace (saying why, once)."""
    if name == "auto":
        try:
            b = make_backend("bcc", config)
            b.start()
            return b
        except RecorderError as exc:
            _write(warn, f"proctrace-bcc: BCC backend not usable ({exc}); using bpftrace\n")
        name = "bpftrace"
    if name == "bpftrace" and config.fds:
        _write(warn, "proctrace-bcc: the bpftrace backend records no descriptor tables at "
                     "exec; --fds keeps only the /proc snapshot of processes alive at the end\n")
        config.fds = False
    b = make_backend(name, config)
    b.start()
    for notice in b.notices:
        _write(warn, f"proctrace-bcc: {notice}\n")
    return b


def _write(stream: TextIO | None, text: str) -> None:
    s = stream if stream is not None else sys.stderr
    s.write(text)
    s.flush()


# ---------------------------------------------------------------------------
# Ordering


class Reorder:
    """Releases events in timestamp order once they are older than a watermark."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Event]] = []
        self._seq = itertools.count()

    def add(self, events: list[Event]) -> None:
        for ev in events:
            heapq.heappush(self._heap, (ev.timestamp, next(self._seq), ev))

    def pop_until(self, watermark: int | None) -> list[Event]:
        out: list[Event] = []
        h = self._heap
        while h and (watermark is None or h[0][0] < watermark):
            out.append(heapq.heappop(h)[2])
        return out


# ---------------------------------------------------------------------------
# The traced command


@dataclass(slots=True)
class Invoker:
    """Who CMD runs as: the user behind sudo unless --as-root."""

    uid: int | None = None
    gid: int | None = None
    groups: list[int] | None = None
    env: dict[str, str] | None = None

    @classmethod
    def from_env(cls, as_root: bool) -> Invoker:
        sudo_uid = os.environ.get("SUDO_UID")
        if as_root or os.geteuid() != 0 or not sudo_uid:
            return cls()
        uid = int(sudo_uid)
        try:
            pw = pwd.getpwuid(uid)
        except KeyError:
            raise RecorderError(f"SUDO_UID={uid} is not a known user") from None
        gid = int(os.environ.get("SUDO_GID", pw.pw_gid))
        env = dict(os.environ)
        env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
        return cls(uid, gid, os.getgrouplist(pw.pw_name, gid), env)


def _spawn(cmd: list[str], inv: Invoker) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            cmd, user=inv.uid, group=inv.gid, extra_groups=inv.groups, env=inv.env,
            close_fds=False,  # CMD inherits what it would have inherited from us
        )
    except FileNotFoundError:
        raise RecorderError(f"command not found: {cmd[0]}") from None
    except PermissionError:
        raise RecorderError(f"permission denied: {cmd[0]}") from None


def exit_status(returncode: int) -> int:
    """Popen's returncode as a shell reports it (128+N when killed by signal N)."""
    return 128 - returncode if returncode < 0 else returncode


# ---------------------------------------------------------------------------
# The recording loop


class _Stop:
    def __init__(self) -> None:
        self.reason: str | None = None
        self.signals = 0


class Recorder:
    def __init__(self, opts: RecordOptions) -> None:
        self.opts = opts
        self.stop = _Stop()
        self.alive: set[int] = set()  # pids of the tree currently alive (recorder's ns)
        # Not (yet) in the tree, in case a fork placing them comes late (see _track):
        self._exits: dict[int, int] = {}  # pid -> exit time
        self._forks: dict[int, list[tuple[int, int]]] = {}  # parent -> [(child, fork time)]
        self._nforks = 0
        self.seen = 0
        self.events = 0
        self.lost = 0
        self.root_pid: int | None = None
        self.root_exit: Exit | None = None
        self.t0 = 0
        self.tracer = os.getpid()
        self._status_at = 0.0
        self._liveness_at = 0.0
        self._tty = (not opts.quiet) and sys.stderr.isatty() and opts.stderr is None

    # -- signals ---------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop.signals += 1
        self.stop.reason = "interrupted" if signum == signal.SIGINT else "terminated"
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None and not self._terminal_sent(signum):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    @staticmethod
    def _terminal_sent(signum: int) -> bool:
        """True when a Ctrl-C from our terminal already reached CMD (same foreground group)."""
        if signum != signal.SIGINT:
            return False
        try:
            return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
        except OSError:
            return False

    # -- events --------------------------------------------------------------

    def _rebase(self, evs: list[Event]) -> list[Event]:
        for ev in evs:
            ev.timestamp = max(0, ev.timestamp - self.t0)
        return evs

    def _track(self, evs: list[Event]) -> list[Event]:
        """Follow the tree's membership (events in timestamp order); drop our own events.

        Every event is passed on (written), whatever it does to `alive`.  Should a
        fork still come after events it precedes (a backend that delivered it
        late), membership stays right: the exit of a pid not in the tree and a
        fork whose parent is not in it are remembered for a while (UNPLACED_NS,
        at most UNPLACED_MAX of each), and when a late fork places that pid in
        the tree, an exit stamped at or after the fork means it is gone, and the
        forks it made before its exit join the tree too (recursively).
        """
        out: list[Event] = []
        for ev in evs:
            if isinstance(ev, Fork):
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
        UNPLACED_MAX."""
        self._nforks = lineage.prune(self._exits, self._forks, self._nforks,
                                     newest - UNPLACED_NS, UNPLACED_MAX)

    def _status(self, force: bool = False) -> None:
        if not self._tty:
            return
        now = time.monotonic()
        if not force and now - self._status_at < 0.25:
            return
        self._status_at = now
        sys.stderr.write(
            f"\r\x1b[2K[proctrace-bcc] {self.seen} processes seen, {len(self.alive)} running, "
            f"{self.events} events, {self.lost} lost"
        )
        sys.stderr.flush()

    # -- main ----------------------------------------------------------------

    def run(self) -> int:
        o = self.opts
        if o.backend not in BACKENDS:
            raise UsageError(f"unknown backend {o.backend!r} (choose from {', '.join(BACKENDS)})")
        if o.timeout is not None and o.timeout <= 0:
            raise UsageError("--timeout must be positive")
        config = BackendConfig(
            tracer_pid=None if (o.raw or not o.command) else self.tracer,
            fds=o.fds, argv_max=o.argv_max, buffer_pages=o.buffer_pages,
            bpftrace_path=o.bpftrace_path,
        )
        if o.print_bpf:
            names = ["bcc", "bpftrace"] if o.backend == "auto" else [o.backend]
            b = make_backend(names[0], config)
            sys.stdout.write(b.program_text())
            return 0
        if os.geteuid() != 0:
            raise RecorderError("recording needs root (CAP_BPF and CAP_PERFMON): run it with sudo")
        ensure_tracefs()
        inv = Invoker.from_env(o.as_root)
        try:
            writer = RecordingWriter(o.output)
        except OSError as exc:
            raise RecorderError(f"cannot write {o.output}: {exc.strerror or exc}") from None
        if inv.uid is not None:
            with contextlib.suppress(OSError):
                os.chown(o.output, inv.uid, inv.gid or -1)
        backend: Backend | None = None
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            started = time.monotonic()
            backend = start_backend(o.backend, config, o.stderr)
            self.t0 = time.monotonic_ns()
            self.tracer = getattr(backend, "tracer_tgid", self.tracer) or self.tracer
            header = Header(
                version=__version__, backend=backend.name, kernel=platform.release(),
                hostname=socket.gethostname(), command=list(o.command) or None,
                root_pid=None, raw=o.raw or not o.command,
                start_time=_dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds"),
                options={"timeout": o.timeout, "grace": o.grace, "fds": o.fds,
                         "buffer_pages": o.buffer_pages,
                         "startup_s": round(time.monotonic() - started, 4)},
            )
            if self.stop.reason is not None:  # interrupted while the probes loaded
                writer.write_header(header)
                writer.write(End(0, self.stop.reason, [], None, 0))
                return 128 + signal.SIGINT if self.stop.reason == "interrupted" else 143
            if o.command:
                self.proc = _spawn(o.command, inv)
                self.root_pid = self.proc.pid
                header.root_pid = self.proc.pid
            writer.write_header(header)
            return self._loop(backend, writer)
        except BaseException:
            if writer.events_written == 0 and not writer.header_written:
                # Nothing recorded (the backend did not start): leave no empty file.
                writer.close()
                with contextlib.suppress(OSError):
                    os.unlink(o.output)
            raise
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if backend is not None:
                backend.close()
            writer.close()
            if self._tty:
                sys.stderr.write("\r\x1b[2K")
                sys.stderr.flush()

    def _loop(self, backend: Backend, writer: RecordingWriter) -> int:
        reorder = Reorder()
        start = time.monotonic()
        prev_cycle: int | None = None
        root_reaped_at: float | None = None
        stop_at: float | None = None
        last_sync = 0
        while True:
            cycle = time.monotonic_ns()
            reorder.add(self._rebase(backend.poll(POLL_MS)))
            if prev_cycle is not None:
                # Older than the previous cycle's start, and than what the backend
                # proves it has delivered: every earlier event is in `reorder`.
                mark = prev_cycle
                proven = backend.synced_until()
                if proven is not None:
                    mark = min(mark, proven)
                ready = self._track(reorder.pop_until(mark - self.t0))
                writer.write_many(ready)
                self.events += len(ready)
                # to the OS every cycle; to the disk once a second (fsync costs ms here)
                sync = cycle - last_sync >= SYNC_NS
                writer.flush(sync=sync)
                if sync:
                    last_sync = cycle
            prev_cycle = cycle
            self._status()
            now = time.monotonic()
            proc = getattr(self, "proc", None)
            if proc is not None and root_reaped_at is None and proc.poll() is not None:
                root_reaped_at = now
            reason = self._should_stop(backend, now - start, root_reaped_at, now)
            if reason == "exited" and self.stop.reason is not None:
                reason = self.stop.reason  # the tree ended because we were interrupted
            if reason is None and self.stop.reason is not None:
                if stop_at is None:
                    stop_at = now + 2.0  # let the tree react to the signal, briefly
                if self.stop.signals > 1 or now >= stop_at or not self.alive:
                    reason = self.stop.reason
            if reason is not None:
                break
        # Everything emitted before now is in the buffers: take it all.
        time.sleep(0.01)
        reorder.add(self._rebase(backend.drain()))
        rest = self._track(reorder.pop_until(None))
        writer.write_many(rest)
        self.events += len(rest)
        if self.opts.fds:
            self._snapshot_fds(writer)
        status = self._finish_cmd(reason)
        end_ts = max(0, time.monotonic_ns() - self.t0)
        writer.write(End(end_ts, reason, sorted(self.alive), status, self.lost))
        writer.flush()
        self._status(force=True)
        return status if status is not None else 0

    def _snapshot_fds(self, writer: RecordingWriter) -> None:
        """Descriptors of every process of the tree still alive (the hang case)."""
        for pid in sorted(self.alive):
            fds = snapshot_fds(pid)
            if fds is not None:
                ts = max(0, time.monotonic_ns() - self.t0)
                writer.write(FdSnapshot(ts, pid, fds))
                self.events += 1

    def _should_stop(self, backend: Backend, elapsed: float, root_reaped_at: float | None,
                     now: float) -> str | None:
        o = self.opts
        if o.timeout is not None and elapsed >= o.timeout:
            return "timeout"
        if not o.command or root_reaped_at is None:
            return None
        # alive is updated in timestamp order: once the root's exit is processed and
        # nothing is alive, every descendant's fork (earlier than its parent's exit)
        # has been seen too.
        if self.root_exit is not None and not self.alive:
            tracked = backend.tracked()
            if tracked is None or tracked == 0:
                return "exited"
        if self.lost and now - self._liveness_at >= 1.0:
            # Events were lost, exits perhaps among them: ask the kernel (or /proc).
            self._liveness_at = now
            # BCC's count is the kernel's own map; other backends count in user
            # space from the same (lossy) events, so ask /proc instead.
            tracked = backend.tracked() if backend.name == "bcc" else None
            if tracked == 0 or (tracked is None and not any(
                    Path(f"/proc/{pid}").exists() for pid in self.alive)):
                self.alive.clear()
                return "exited"
        if o.grace is not None and now - root_reaped_at >= o.grace:
            return "grace"
        return None

    def _kill_leftovers(self) -> None:
        """--kill-leftovers: end what still runs of the tree (recorded as running first)."""
        root = self.root_pid
        pids = [p for p in self.alive if p != root]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 2.0
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if Path(f"/proc/{p}").exists()]
                time.sleep(0.02)
            if not pids:
                return

    def _finish_cmd(self, reason: str) -> int | None:
        proc = getattr(self, "proc", None)
        if proc is None:
            return None
        # Whether CMD still ran when recording stopped, before --kill-leftovers: ending
        # its children can make CMD exit on its own (bats dies of the SIGTERM it
        # forwards), and `record` must still say 124 for a timeout.
        cmd_running = proc.poll() is None
        if self.opts.kill_leftovers and reason != "exited":
            self._kill_leftovers()
        if cmd_running and reason in ("timeout", "interrupted", "terminated"):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if reason == "timeout":
                return TIMEOUT_EXIT
        return exit_status(proc.wait())


def ensure_tracefs() -> None:
    """Mount tracefs if nothing is mounted where BCC and bpftrace look for it."""
    if Path("/sys/kernel/tracing/events").is_dir() or Path(
        "/sys/kernel/debug/tracing/events"
    ).is_dir():
        return
    r = subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RecorderError(f"tracefs is not mounted and mounting it failed: {r.stderr.strip()}")


def run_record(opts: RecordOptions) -> int:
    return Recorder(opts).run()
