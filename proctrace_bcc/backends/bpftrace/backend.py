"""BpftraceBackend: runs the rendered proctrace.bt under `bpftrace -f json`, reads its
output into the parser, and proves how far it has read.

Start-up: `start()` returns only after the last probe of the script (on
prctl) answered a handshake the backend triggers itself; bpftrace's
"attached_probes" message alone comes before the probes are live.

While recording, the same probe proves how far bpftrace has read: bpftrace
reads one perf buffer per CPU, in turn and, when loaded, late (a busy CPU's
buffer can wait 100 ms and more while the other is read), so `sync()` calls
the handshake pinned to every online CPU in turn; once every CPU has
answered, every event stamped before the first call has been parsed
(`synced_until()`), which the recorder uses as its reordering watermark.
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import os
import secrets
import select
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from proctrace_bcc.backends.base import Backend, BackendConfig
from proctrace_bcc.backends.bpftrace.parser import Parser
from proctrace_bcc.backends.bpftrace.probe import (
    MIN_VERSION,
    Version,
    bpftrace_version,
    find_bpftrace,
    in_initial_pidns,
    kernel_has_prepare_exec,
    online_cpus,
    sibling_offset,
    version_str,
)
from proctrace_bcc.backends.bpftrace.protocol import HANDSHAKE
from proctrace_bcc.backends.bpftrace.script import (
    argv_chunks,
    render_script,
    script_env,
    script_path,
)
from proctrace_bcc.errors import BackendUnavailable, RecorderError
from proctrace_bcc.events import Event

# 0.27.0 and 0.27.1 (run here) reported only CPU 0's lost events; 0.17 and 0.23 all.
LOST_CPU0_VERSION = (0, 27, 0)
# compile + verify + attach: a few seconds here, minutes under software emulation
START_TIMEOUT = float(os.environ.get("PROCTRACE_BPFTRACE_START_TIMEOUT") or 90)
POLL_SYNC_S = 0.5  # how long poll() waits for a sync round (an unfinished one carries over)
POLL_BATCH_S = 0.01  # poll() reads this long after the first bytes (bpftrace writes line by line)
SYNC_EVERY_NS = 50_000_000  # poll() starts a sync round at most this often (busy: polls are short)
DRAIN_SYNC_S = 5.0  # how long drain() waits for its own, final round
EXIT_S = 5.0  # how long bpftrace may take to exit once told to stop (then SIGKILL)


@dataclass(slots=True)
class _Round:
    """One sync round: handshakes sent at `started` (monotonic ns), seq -> pinned CPU."""

    started: int
    want: dict[int, int]


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Wait for a bpftrace told to stop; SIGKILL it after EXIT_S."""
    try:
        proc.wait(EXIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _die_with_parent() -> None:
    """In the bpftrace child: get SIGTERM when the recorder dies."""
    libc = ct.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


class BpftraceBackend(Backend):
    """`tracked()` stays the base's None: a count here would come from the same
    (lossy) events the recorder already has, so it is not the kernel's word."""

    name = "bpftrace"

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.binary = ""
        self.version: Version = MIN_VERSION
        self.prepare_exec = True
        # None: use sched_prepare_exec when the kernel has it (tests force either way)
        self.force_prepare_exec: bool | None = None
        self.init_pidns = in_initial_pidns()
        self.nonce = secrets.randbelow(1 << 31) + 1
        self.chunks = argv_chunks(config.argv_bytes())
        self.parser = Parser(self.chunks)
        self.pidns_level = 0
        self.startup_s = 0.0
        if config.env:
            # Measured (bpftrace 0.17, this machine): a script that walks the new image's
            # envp[] (128 entries) and compares each entry with the 8 default names is
            # refused by the verifier after 62 s of loading; bpftrace has no strlen to
            # walk the strings instead.  So no environment is recorded, and said so.
            self.notices.append(
                "the bpftrace backend records no environment variables (--env): its "
                "per-exec loop over the environment does not pass the verifier; use "
                "--backend bcc for the tests' names")
            config.env = ()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._script: Path | None = None
        self._err: Path | None = None
        self._libc = ct.CDLL(None, use_errno=True)
        self._seq = 0  # last sync handshake sent (0: the start-up handshake)
        self._round: _Round | None = None  # the sync round waiting for answers
        self._round_sent = 0  # when the last round started (monotonic ns)
        self._synced = 0  # CLOCK_MONOTONIC ns: every event stamped before it has been read
        self.sync_rounds = 0  # rounds completed, and the time they took (for benchmarks)
        self.sync_ns_total = 0
        self.sync_ns_max = 0

    # -- program ---------------------------------------------------------------

    def params(self) -> list[str]:
        """$1 .. $4 of proctrace.bt."""
        filt = 0 if self.config.tracer_pid is None else 1
        return [str(filt), str(self.nonce), str(self.chunks), str(sibling_offset())]

    def render(self) -> str:
        return render_script(script_path().read_text(), self.version, self.prepare_exec,
                             self.init_pidns)

    def program_text(self) -> str:
        try:
            self.binary = find_bpftrace(self.config.bpftrace_path)
            self.version = bpftrace_version(self.binary)
            how = f"{self.binary} {version_str(self.version)}"
        except BackendUnavailable as exc:
            how = f"(no usable bpftrace: {exc.reason}; rendered for {version_str(MIN_VERSION)})"
        self.prepare_exec = self._want_prepare_exec()
        env = " ".join(f"{k}={v}" for k, v in script_env(self.version,
                                                           self.config.buffer_pages).items())
        head = (f"// rendered for {how}, sched_prepare_exec: {self.prepare_exec}, "
                f"initial pid namespace: {self.init_pidns}\n"
                f"// run as: {env} bpftrace -f json SCRIPT {' '.join(self.params())}\n")
        return head + self.render()

    def _want_prepare_exec(self) -> bool:
        if self.force_prepare_exec is not None:
            return self.force_prepare_exec
        return kernel_has_prepare_exec()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        t0 = time.monotonic()
        self.binary = find_bpftrace(self.config.bpftrace_path)
        self.version = bpftrace_version(self.binary)
        if self.version >= LOST_CPU0_VERSION:
            self.notices.append(
                f"bpftrace {version_str(self.version)} reports lost events of CPU 0 only "
                "(a burst lost on CPU 1 went unreported here): a Lost count in the "
                "recording may be too low")
        self.prepare_exec = self._want_prepare_exec()
        fd, name = tempfile.mkstemp(prefix="proctrace-", suffix=".bt")
        self._script = Path(name)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.render())
        efd, ename = tempfile.mkstemp(prefix="proctrace-bpftrace-", suffix=".err")
        self._err = Path(ename)
        env = dict(os.environ)
        env.update(script_env(self.version, self.config.buffer_pages))
        argv = [self.binary, "-f", "json", str(self._script), *self.params()]
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=efd, env=env,
                start_new_session=True,  # a Ctrl-C for CMD must not stop the tracer
                preexec_fn=_die_with_parent,  # one small ctypes call
            )
        except OSError as exc:
            os.close(efd)
            self.close()
            raise BackendUnavailable("bpftrace", f"cannot run {self.binary}: {exc}") from None
        os.close(efd)
        try:
            self._handshake(t0 + START_TIMEOUT)
        except BaseException:
            self.close()
            raise
        self.startup_s = time.monotonic() - t0
        self.tracer_tgid = self.parser.tracer or None
        self.pidns_level = self.parser.level
        if self.init_pidns and self.pidns_level != 0:
            self.close()
            raise RecorderError("bpftrace: /proc/self/ns/pid says the initial pid namespace "
                                f"but the kernel says level {self.pidns_level}")

    def _prctl(self, seq: int = 0) -> None:
        self._libc.prctl(ct.c_int(HANDSHAKE), ct.c_ulong(self.nonce), ct.c_ulong(seq),
                         ct.c_ulong(0), ct.c_ulong(0))

    def _handshake(self, deadline: float) -> None:
        """Trigger the prctl probe until it answers: then every probe is attached."""
        while self.parser.handshakes == 0:
            proc = self._proc
            assert proc is not None
            if proc.poll() is not None:
                self._read(0)
                raise RecorderError(f"bpftrace exited ({proc.returncode}) before its probes "
                                    f"were live: {self._stderr_reason()}")
            if time.monotonic() > deadline:
                raise RecorderError(
                    f"bpftrace did not answer the start-up handshake within {START_TIMEOUT:.0f} s"
                    f" ({self._stderr_reason()})")
            if self.parser.attached is not None:
                self._prctl()
            self._read(0.02)

    def _stderr_reason(self) -> str:
        text = ""
        if self._err is not None:
            with contextlib.suppress(OSError):
                text = self._err.read_text(errors="replace")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        # bpftrace 0.17 warns about RLIMIT_MEMLOCK on every start; it is harmless.
        errors = [ln for ln in lines if "ERROR" in ln and "RLIMIT_MEMLOCK" not in ln]
        chosen = errors or [ln for ln in lines if "RLIMIT_MEMLOCK" not in ln]
        return chosen[0][:300] if chosen else "no message"

    # -- sync: how far bpftrace has read ---------------------------------------

    def _start_round(self) -> None:
        """Call the handshake once on every online CPU, pinned there; remember the time.

        A record in a CPU's perf buffer is read, and printed, before any record
        written after it on that CPU.  Our prctl pinned to CPU k runs its probe
        after every BPF program that stamped an event earlier on k has finished
        (they run with preemption disabled), so k's answer comes after all of
        them.  A CPU this thread may not run on (a cpuset) is skipped: the
        traced commands, our descendants, cannot run there either unless moved.
        """
        before = os.sched_getaffinity(0)
        want: dict[int, int] = {}
        started = time.monotonic_ns()
        try:
            for cpu in online_cpus():
                try:
                    os.sched_setaffinity(0, {cpu})
                except OSError:
                    continue
                self._seq += 1
                self._prctl(self._seq)
                want[self._seq] = cpu
        finally:
            os.sched_setaffinity(0, before)
        if not want:  # no CPU could be pinned: one unpinned answer, no proof of the others
            self._seq += 1
            self._prctl(self._seq)
            want[self._seq] = -1
        self._round = _Round(started, want)
        self._round_sent = started

    def _finish_round(self) -> bool | None:
        """True: the pending round is complete (the watermark moves to its start);
        False: answers missing; None: an answer came from another CPU than the one
        its call was pinned to (hot-unplug), so the round proves nothing."""
        r = self._round
        assert r is not None
        answers = self.parser.answers
        if any(seq not in answers for seq in r.want):
            return False
        ok = all(cpu in (-1, answers[seq]) for seq, cpu in r.want.items())
        last = max(r.want)
        for seq in [s for s in answers if s <= last]:  # with any older, abandoned round's
            del answers[seq]
        self._round = None
        if not ok:
            return None
        took = time.monotonic_ns() - r.started
        self._synced = max(self._synced, r.started)
        self.sync_rounds += 1
        self.sync_ns_total += took
        self.sync_ns_max = max(self.sync_ns_max, took)
        return True

    def sync(self, timeout: float = 1.0, fresh: bool = False) -> bool:
        """Wait up to `timeout` s for a round of per-CPU handshakes to come back.

        Starts a round unless one is pending (`fresh`: start a new one anyway,
        to prove everything up to now; it also completes the older one, as
        each CPU's answers come in order).  True when a round completed: every
        event stamped before `synced_until()` has then been parsed.  A round
        that does not complete in time stays pending for the next call, so a
        slow bpftrace delays the watermark but never makes it lie.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return False
        if self._round is None or fresh:
            self._start_round()
        deadline = time.monotonic() + timeout
        while True:
            done = self._finish_round()
            if done:
                return True
            if done is None:  # a CPU went away under us: try again with the CPUs there are
                self._start_round()
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                return False
            self._read(min(left, 0.02))

    def synced_until(self) -> int:
        """CLOCK_MONOTONIC ns before which every event has been returned by poll() or
        drain() (0 before the first sync round completed).

        "Stamped before" means the BPF program ran before, which holds for every
        record but one: without sched_prepare_exec an Exec is stamped at execve's
        entry and its lines come when the new image runs, so an exec in progress
        across the round comes after it (the recorder's one-poll margin covers
        that; it changes no process's membership).
        """
        return self._synced

    def _read(self, timeout: float, batch: float = 0.0) -> None:
        """Read what bpftrace wrote: wait up to `timeout` for the first bytes, then
        read on until `batch` s after them, and while more is there at once."""
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        fd = proc.stdout.fileno()
        wait = timeout
        end: float | None = None
        total = 0
        while total < (64 << 20):
            ready, _, _ = select.select([fd], [], [], max(0.0, wait))
            if not ready:
                break
            data = os.read(fd, 1 << 20)
            if not data:
                break
            total += len(data)
            buf = self._buf + data
            cut = buf.rfind(b"\n")
            if cut < 0:
                self._buf = buf
            else:
                self.parser.feed(buf[:cut])
                self._buf = buf[cut + 1:]
            if end is None:
                end = time.monotonic() + batch
            wait = end - time.monotonic()

    def _check_alive(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is not None and self.parser.handshakes:
            self._read(0)
            raise RecorderError(f"bpftrace exited ({proc.returncode}) while recording: "
                                f"{self._stderr_reason()}")

    def poll(self, timeout_ms: int) -> list[Event]:
        """What bpftrace printed; then (up to POLL_SYNC_S) a sync round, so that when
        it completes every event stamped before this call is among those returned
        (or pending in the parser: an exec whose lines are not all there yet).

        bpftrace writes each line on its own: after the first, poll() reads on for
        POLL_BATCH_S so that a busy recording is read in batches, and a new round
        starts at most every SYNC_EVERY_NS (a round pins this thread to each CPU).
        """
        self._check_alive()
        self.parser.resync()
        self._read(timeout_ms / 1000, batch=POLL_BATCH_S)
        if self._round is not None or time.monotonic_ns() - self._round_sent >= SYNC_EVERY_NS:
            self.sync(POLL_SYNC_S)
        self.parser.expire()
        return self.parser.take()

    def drain(self) -> list[Event]:
        """Everything stamped before this call (a fresh round, up to DRAIN_SYNC_S)."""
        self.sync(DRAIN_SYNC_S, fresh=True)
        self._read(0)
        self.parser.expire(everything=True)
        return self.parser.take()

    def close(self) -> None:
        """Stop bpftrace without waiting for it: SIGINT (it runs END, which clears the
        maps unprinted, then detaches its probes: over a second of kernel waits) with
        our end of its output closed, so that it cannot block on a full pipe; a thread
        reaps it (SIGKILL after EXIT_S).  Everything it recorded has been read by then
        (drain's sync round); its probes are gone when it has exited."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            if proc.stdout is not None:
                proc.stdout.close()
            threading.Thread(target=_reap, args=(proc,), daemon=True).start()
        self._proc = None
        for p in (self._script, self._err):
            if p is not None:
                with contextlib.suppress(OSError):
                    p.unlink()
        self._script = self._err = None
