"""The bpftrace backend: bpf_programs/proctrace.bt run by `bpftrace -f json`, lines parsed.

For machines that have bpftrace but cannot run BCC.  The script emits one
printf line per record (see the comment at the top of proctrace.bt); strings
travel as `%rx` hex so no argv content can confuse the parser.  `Parser` turns
those JSON lines into the shared event objects and needs neither root nor
bpftrace (tests/unit/test_bpftrace_parse.py feeds it captured output).

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
import platform
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from proctrace_bcc.backends.argv import split_args
from proctrace_bcc.backends.base import Backend, BackendConfig
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
    from_bytes,
)

HANDSHAKE = 0x50544254  # prctl option no kernel knows ("PTBT"): returns EINVAL
CHUNK = 200  # bytes per string / argument-area chunk (BPFTRACE_STRLEN, max 200 in 0.17)
ARGV_MAX_LIMIT = 65536 - 4 * 4096  # the same ceiling as the BCC backend
MIN_VERSION = (0, 17, 0)
ARGS_DOT_VERSION = (0, 19, 0)  # `args` became a struct: `args.x` (args->x still accepted)
OFFSETOF_VERSION = (0, 18, 0)  # offsetof(): reaches struct pid's flexible `numbers` array
MAX_STRLEN_ENV_VERSION = (0, 20, 0)  # BPFTRACE_STRLEN -> BPFTRACE_MAX_STRLEN
# From 0.22 buf() has no length limit: its result (a 4-byte length, then the bytes) is
# built in a scratch buffer of BPFTRACE_MAX_STRLEN bytes, so buf(x, CHUNK) needs
# CHUNK + 4 (0.23.2 with 200: "invalid access to map value, value_size=800 off=800").
BUF_SCRATCH_VERSION = (0, 22, 0)
# 0.22 and 0.23 read a tracepoint's __data_loc string at the wrong address (empty or
# garbage; bpftrace PR #4238, fixed in 0.24.0): their exec probes are rendered as raw
# tracepoints that read the same strings from the kernel's struct linux_binprm.
DATA_LOC_BUG = ((0, 22, 0), (0, 24, 0))
# 0.27.0 and 0.27.1 (run here) reported only CPU 0's lost events; 0.17 and 0.23 all.
LOST_CPU0_VERSION = (0, 27, 0)
MAP_KEYS = 65536
# compile + verify + attach: a few seconds here, minutes under software emulation
START_TIMEOUT = float(os.environ.get("PROCTRACE_BPFTRACE_START_TIMEOUT") or 90)
STALE_EXEC_S = 2.0  # an exec still missing lines after this long is emitted as truncated
POLL_SYNC_S = 0.5  # how long poll() waits for a sync round (an unfinished one carries over)
POLL_BATCH_S = 0.01  # poll() reads this long after the first bytes (bpftrace writes line by line)
SYNC_EVERY_NS = 50_000_000  # poll() starts a sync round at most this often (busy: polls are short)
DRAIN_SYNC_S = 5.0  # how long drain() waits for its own, final round
CPU_ONLINE = "/sys/devices/system/cpu/online"
PREPARE_EXEC_TP = "sched/sched_prepare_exec"  # Linux 6.10+
TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
BPF_DIR = Path(__file__).resolve().parent.parent.parent / "bpf_programs"

Version = tuple[int, int, int]


# ---------------------------------------------------------------------------
# The binary


def parse_version(text: str) -> Version | None:
    """`bpftrace --version` output ("bpftrace v0.17.0", "bpftrace v0.21.2-12-g1") -> (0, 17, 0)."""
    m = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def version_str(v: Version) -> str:
    return "v{}.{}.{}".format(*v)


def find_bpftrace(path: str | None) -> str:
    """The bpftrace to run: `path` (--bpftrace-path) or the one on PATH."""
    if path:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise BackendUnavailable("bpftrace", f"{path} is not an executable file")
        return path
    found = shutil.which("bpftrace") or next(
        (p for p in ("/usr/bin/bpftrace", "/usr/sbin/bpftrace", "/usr/local/bin/bpftrace")
         if os.access(p, os.X_OK)), None)
    if found is None:
        raise BackendUnavailable(
            "bpftrace", "no bpftrace on PATH (apt-get install bpftrace, or --bpftrace-path PATH)")
    return found


def bpftrace_version(binary: str) -> Version:
    """Run `bpftrace --version`; BackendUnavailable when it fails or is too old."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendUnavailable("bpftrace", f"{binary} --version failed: {exc}") from None
    v = parse_version(out.stdout + " " + out.stderr) if out.returncode == 0 else None
    if v is None:
        text = (out.stdout + out.stderr).strip().splitlines()
        raise BackendUnavailable(
            "bpftrace", f"{binary} --version did not print a version: {text[:1]}")
    if v < MIN_VERSION:
        raise BackendUnavailable(
            "bpftrace", f"{binary} is {version_str(v)}, too old: proctrace-bcc needs bpftrace "
            f"{version_str(MIN_VERSION)} or newer")
    return v


def has_tracepoint(name: str) -> bool | None:
    """Whether tracefs lists tracepoint `name` ("sched/sched_prepare_exec"); None: no tracefs."""
    for root in TRACEFS:
        if Path(root, "events").is_dir():
            return Path(root, "events", name).is_dir()
    return None


def kernel_has_prepare_exec(release: str | None = None) -> bool:
    """sched_prepare_exec exists (tracefs says so; without tracefs: Linux 6.10 or newer)."""
    seen = has_tracepoint(PREPARE_EXEC_TP)
    if seen is not None:
        return seen
    m = re.match(r"(\d+)\.(\d+)", release or platform.release())
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (6, 10)


def sibling_offset() -> int:
    """offsetof(struct task_struct, sibling) from the running kernel's BTF (0 if unknown).

    Only used to find a new child's pid in a non-initial pid namespace.
    """
    from proctrace_bcc.btf import BTF

    try:
        return BTF.load().member_offset("task_struct", "sibling")
    except (OSError, RecorderError):
        return 0


# ---------------------------------------------------------------------------
# The script


def script_path() -> Path:
    for cand in (BPF_DIR, Path(__file__).resolve().parent.parent / "bpf_programs"):
        if (cand / "proctrace.bt").exists():
            return cand / "proctrace.bt"
    raise RecorderError(f"bpf_programs/proctrace.bt not found (looked in {BPF_DIR})")


_NR = re.compile(r"NR\((\$\w+)\)")
_UPIDS = re.compile(r"UPIDS\((\$\w+)\)")


def upids(var: str, version: Version) -> str:
    """`struct upid *` to the first of `var`'s numbers (a `struct pid *` variable).

    `numbers` is a flexible array (`struct upid[0]` in BTF): 0.17 casts it to a
    pointer, 0.23 refuses that cast ("Cannot cast from struct upid[0]"), so from
    0.18 (offsetof()) the address is computed from the struct's own address.
    """
    if version >= OFFSETOF_VERSION:
        return f"((struct upid *)((uint64){var} + offsetof(struct pid, numbers)))"
    return f"((struct upid *){var}->numbers)"


def _nr(var: str, version: Version) -> str:
    """One ternary, no `$lv == 0 ?` shortcut around it: 0.23 segfaults compiling a
    ternary nested in another whose inner one reads kernel memory.  At level 0 the
    check holds for every pid (@inum is then the initial namespace's).  The
    pid_namespace cast is redundant in C; 0.23 needs it to resolve `ns` in a struct
    reached through a cast ("struct pid_namespace does not contain a field named ns")."""
    up = f"({upids(var, version)} + $lv)"
    return (f"(({var}->level >= $lv && ((struct pid_namespace *){up}->ns)->ns.inum == @inum)"
            f" ? {up}->nr : 0)")


def _nr_init(var: str, version: Version) -> str:
    return f"{upids(var, version)}->nr"


PROC_PID_INIT_INO = 0xEFFFFFFC  # the initial pid namespace's inode (include/linux/proc_ns.h)


def in_initial_pidns() -> bool:
    """Whether this process lives in the initial pid namespace (pids are global)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino == PROC_PID_INIT_INO
    except OSError:
        return False


BPRM = "((struct linux_binprm *)arg{})"
# tracepoint -> (raw tracepoint, what its `args.` fields become); the raw tracepoints'
# arguments are those of trace_sched_process_exec(p, old_pid, bprm) and
# trace_sched_prepare_exec(task, bprm), the strings those of the tracepoints' fields.
RAW_EXEC_PROBES = {
    "tracepoint:sched:sched_process_exec": ("rawtracepoint:sched_process_exec", {
        "args.old_pid": "arg1", "args.filename": BPRM.format(2) + "->filename"}),
    "tracepoint:sched:sched_prepare_exec": ("rawtracepoint:sched_prepare_exec", {
        "args.interp": BPRM.format(1) + "->interp",
        "args.filename": BPRM.format(1) + "->filename"}),
}


def raw_exec_probes(text: str) -> str:
    """The exec tracepoints' probes as raw tracepoints (for DATA_LOC_BUG versions).

    Probes on one event still run in the order they are written (all of them raw).
    """
    out = []
    subs: dict[str, str] | None = None
    for line in text.splitlines():
        if line[:1].isalpha():  # a probe's attach point (a probe's body is indented)
            raw = RAW_EXEC_PROBES.get(line.strip())
            if raw is None and line.rstrip(",").strip() in RAW_EXEC_PROBES:
                raise RecorderError(f"proctrace.bt: {line.strip()} shares its probe")
            subs = raw[1] if raw else None
            if raw:
                line = raw[0]
        elif subs:
            for field_, expr in subs.items():
                line = line.replace(field_, expr)
            if "args." in line:
                raise RecorderError(f"proctrace.bt: no raw tracepoint argument for {line!r}")
        out.append(line)
    return "\n".join(out) + "\n"


def render_script(template: str, version: Version, prepare_exec: bool,
                  init_pidns: bool = False) -> str:
    """The script for this bpftrace and kernel (see the header of proctrace.bt).

    `init_pidns`: the recorder is in the initial pid namespace, so pid numbers
    need no translation (a smaller program, faster to compile and to run).
    """
    out: list[str] = ["// rendered from bpf_programs/proctrace.bt (its header says how)"]
    keep = [True]
    lines = template.splitlines()
    start = 0
    if template.lstrip().startswith("/*"):  # the template's documentation stays there
        start = next(i for i, ln in enumerate(lines) if "*/" in ln) + 1
    for lineno, line in enumerate(lines[start:], start + 1):
        s = line.strip()
        if s.startswith("//@if "):
            cond = s[len("//@if "):].strip()
            if cond not in ("PREPARE", "!PREPARE"):
                raise RecorderError(f"proctrace.bt:{lineno}: unknown condition {cond!r}")
            keep.append(keep[-1] and (prepare_exec if cond == "PREPARE" else not prepare_exec))
            continue
        if s == "//@endif":
            if len(keep) == 1:
                raise RecorderError(f"proctrace.bt:{lineno}: //@endif without //@if")
            keep.pop()
            continue
        if keep[-1]:
            out.append(line)
    if len(keep) != 1:
        raise RecorderError("proctrace.bt: //@if without //@endif")
    nr = _nr_init if init_pidns else _nr
    text = _NR.sub(lambda m: nr(m.group(1), version), "\n".join(out) + "\n")
    text = _UPIDS.sub(lambda m: upids(m.group(1), version), text)
    if version >= ARGS_DOT_VERSION:
        text = text.replace("args->", "args.")
    if DATA_LOC_BUG[0] <= version < DATA_LOC_BUG[1]:
        text = raw_exec_probes(text)
    return text


def script_env(version: Version, buffer_pages: int) -> dict[str, str]:
    """bpftrace settings through its environment (names changed in 0.20).

    The string length is CHUNK, or from 0.22 CHUNK + 8 so that buf(x, CHUNK) fits
    its scratch buffer; str() then keeps up to CHUNK + 7 bytes, of which the
    script prints CHUNK as before (what c_string expects).
    """
    new = version >= MAX_STRLEN_ENV_VERSION
    strlen = CHUNK + 8 if version >= BUF_SCRATCH_VERSION else CHUNK
    pages = max(8, buffer_pages)
    pages = 1 << (pages.bit_length() - 1)  # perf buffers need a power of two
    return {
        ("BPFTRACE_MAX_STRLEN" if new else "BPFTRACE_STRLEN"): str(strlen),
        ("BPFTRACE_MAX_MAP_KEYS" if new else "BPFTRACE_MAP_KEYS_MAX"): str(MAP_KEYS),
        "BPFTRACE_PERF_RB_PAGES": str(pages),
    }


def argv_chunks(argv_max: int) -> int:
    """Argument-area chunks kept per exec for --argv-max (clamped like the BCC backend)."""
    return max(4096, min(argv_max, ARGV_MAX_LIMIT)) // CHUNK


# ---------------------------------------------------------------------------
# Parsing bpftrace's output


def unhex(tok: str) -> bytes:
    """`%rx` output ("\\x2f\\x74") -> the bytes."""
    return bytes.fromhex(tok.replace("\\x", ""))


def c_string(buf: bytes) -> tuple[bytes, bool]:
    """A string read by str() into CHUNK bytes -> (value, may_be_cut).

    str() keeps at most CHUNK-1 bytes: a value that long may have been longer.
    """
    n = buf.find(b"\0")
    if n < 0:
        return buf, True
    return buf[:n], n >= CHUNK - 1


# E line `script` values
SCRIPT_NO = 0
SCRIPT_YES = 1  # the kernel found an interpreter; a Z line brings the caller's argv[0]
SCRIPT_ASK = 2  # no sched_prepare_exec: a Z line comes, the parser compares argv[0]s

Key = tuple[int, int]  # (tid that called execve, the exec's timestamp)


@dataclass(slots=True)
class _Exec:
    ts: int
    pid: int
    ppid: int
    pgid: int
    sid: int
    uid: int
    arglen: int
    script: int
    nchunks: int
    arrived: float
    chunks: dict[int, bytes] = field(default_factory=dict)
    filename: bytes | None = None
    z: tuple[bytes | None] | None = None  # (argv[0] or None when unreadable) once Z came

    def complete(self) -> bool:
        return (self.filename is not None and len(self.chunks) == self.nchunks
                and (self.script == SCRIPT_NO or self.z is not None))


class Parser:
    """bpftrace `-f json` lines of proctrace.bt -> events.

    `clock_offset`: CLOCK_BOOTTIME - CLOCK_MONOTONIC in ns (bpftrace's `nsecs`
    is boot time); `resync()` re-reads it.
    """

    def __init__(self, max_chunks: int, clock_offset: int | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.max_chunks = max_chunks
        self._fixed_offset = clock_offset
        self.offset = clock_offset if clock_offset is not None else boot_minus_mono()
        self._now = now
        self.out: list[Event] = []
        self.pending: dict[Key, _Exec] = {}
        self.early_z: dict[Key, tuple[bytes | None, float]] = {}  # Z lines before their E
        self.handshakes = 0
        self.answers: dict[int, int] = {}  # sync handshakes answered: seq -> cpu it ran on
        self.level = 0
        self.inum = 0
        self.tracer = 0
        self.attached: int | None = None
        self.lost = 0
        self.orphans = 0  # continuation lines whose exec header never came
        self.bad = 0  # lines we could not parse
        # Processes forked and not exited (pids, recorder's ns).  Lines from different
        # CPUs arrive out of order (a short child's exit before its fork): compare times.
        self._forked: dict[int, int] = {}  # pid -> fork time
        self._exited: dict[int, int] = {}  # pid -> exit time, its fork not read yet

    @property
    def alive(self) -> set[int]:
        return set(self._forked)

    def _fork_seen(self, pid: int, ts: int) -> None:
        ex = self._exited.get(pid)
        if ex is not None and ex >= ts:
            del self._exited[pid]
        else:
            self._forked[pid] = ts

    def _exit_seen(self, pid: int, ts: int) -> None:
        fk = self._forked.get(pid)
        if fk is not None and fk <= ts:
            del self._forked[pid]
        else:
            self._exited[pid] = ts

    def resync(self) -> None:
        if self._fixed_offset is None:
            self.offset = boot_minus_mono()

    def take(self) -> list[Event]:
        out, self.out = self.out, []
        return out

    # -- lines ----------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Complete lines (without or with their newline)."""
        for line in data.splitlines():
            if line.strip():
                self.feed_line(line)

    def feed_line(self, line: bytes) -> None:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.bad += 1
            return
        if not isinstance(msg, dict):
            self.bad += 1
            return
        kind = msg.get("type")
        data = msg.get("data")
        if kind == "printf" and isinstance(data, str):
            try:
                self._record(data.rstrip("\n").split(" "))
            except (ValueError, IndexError):
                self.bad += 1
        elif kind == "lost_events":
            count = data.get("events") if isinstance(data, dict) else msg.get("count")
            if isinstance(count, int) and count > 0:
                self.lost += count
                self.out.append(Lost(time.monotonic_ns(), count))
        elif kind == "attached_probes":
            probes = data.get("probes") if isinstance(data, dict) else None
            self.attached = probes if isinstance(probes, int) else 0
        # anything else (maps printed at exit, warnings): not ours

    def _ts(self, tok: str) -> int:
        return int(tok) - self.offset

    def _record(self, f: list[str]) -> None:
        tag = f[0]
        if tag == "A":
            key = (int(f[1]), int(f[2]))
            ex = self.pending.get(key)
            if ex is None:
                self.orphans += 1
                return
            ex.chunks[int(f[3])] = unhex(f[4])
            self._maybe_done(key, ex)
        elif tag == "E":
            ts, tid = int(f[1]), int(f[2])
            arglen = int(f[8])
            nchunks = min((arglen + CHUNK - 1) // CHUNK, self.max_chunks)
            ex = _Exec(ts, int(f[3]), int(f[4]), int(f[5]), int(f[6]), int(f[7]), arglen,
                       int(f[9]), nchunks, self._now())
            key = (tid, ts)
            early = self.early_z.pop(key, None)
            if early is not None:
                ex.z = (early[0],)
            self.pending[key] = ex
            self._maybe_done(key, ex)
        elif tag == "N":
            key = (int(f[1]), int(f[2]))
            ex = self.pending.get(key)
            if ex is None:
                self.orphans += 1
                return
            ex.filename = unhex(f[3])
            self._maybe_done(key, ex)
        elif tag == "Z":
            key = (int(f[1]), int(f[2]))
            argv0 = unhex(f[4]) if int(f[3]) else None
            ex = self.pending.get(key)
            if ex is None:  # it ran on another CPU than the E line, or the exec failed
                self.early_z[key] = (argv0, self._now())
                return
            ex.z = (argv0,)
            self._maybe_done(key, ex)
        elif tag == "F":
            pid, pgid, sid, child = (int(x) for x in f[2:6])
            self._fork_seen(child, int(f[1]))
            self.out.append(Fork(self._ts(f[1]), pid, child, pgid, child_pgid=pgid, sid=sid))
        elif tag == "T":
            pid, ppid, pgid, status = (int(x) for x in f[2:6])
            self._exit_seen(pid, int(f[1]))
            code, sig, core = Exit.split_status(status & 0xFFFF)
            self.out.append(Exit(self._ts(f[1]), pid, ppid, pgid, exit_code=code, signal=sig,
                                 core_dumped=core))
        elif tag == "X":
            name, cut = c_string(unhex(f[4]))
            self.out.append(ExecFailed(self._ts(f[1]), int(f[2]), from_bytes(name), int(f[3]),
                                       truncated=cut))
        elif tag == "P":
            pid, ppid, argpid, argpgid = (int(x) for x in f[2:6])
            target = argpid or pid  # setpgid(0, x): the caller
            self.out.append(SetPGID(self._ts(f[1]), pid, ppid, argpgid or target,
                                    target_pid=target))
        elif tag == "S":
            pid, ppid, pgid, sid = (int(x) for x in f[2:6])
            self.out.append(SetSID(self._ts(f[1]), pid, ppid, pgid, sid=sid))
        elif tag == "H":
            self.level, self.inum, self.tracer = int(f[1]), int(f[2]), int(f[3])
            self.handshakes += 1
            if len(f) >= 6 and int(f[4]):  # a sync round's answer: seq, cpu
                self.answers[int(f[4])] = int(f[5])
        else:
            self.bad += 1

    # -- execs ----------------------------------------------------------------

    def _maybe_done(self, key: Key, ex: _Exec) -> None:
        if ex.complete():
            del self.pending[key]
            self.out.append(self._exec(ex))

    def expire(self, everything: bool = False) -> None:
        """Emit execs still missing lines after STALE_EXEC_S (all of them: `everything`)."""
        limit = self._now() - STALE_EXEC_S
        for key, ex in list(self.pending.items()):
            if everything or ex.arrived <= limit:
                del self.pending[key]
                self.out.append(self._exec(ex))
        for key, (_, arrived) in list(self.early_z.items()):
            if everything or arrived <= limit:  # a failed exec's (no sched_prepare_exec)
                del self.early_z[key]

    def _exec(self, ex: _Exec) -> Exec:
        kept = min(ex.arglen, self.max_chunks * CHUNK)
        truncated = ex.arglen > kept
        parts: list[bytes] = []
        for i in range(ex.nchunks):
            chunk = ex.chunks.get(i)
            if chunk is None:  # lost: keep what came before it
                truncated = True
                break
            start = i * CHUNK
            window = min(start, ex.arglen - CHUNK)  # where the script's read began
            lo = start - window
            parts.append(chunk[lo:lo + min(CHUNK, kept - start)])
        area = b"".join(parts)
        if ex.filename is None:
            truncated = True
        filename, fcut = c_string(ex.filename) if ex.filename is not None else (b"", False)
        argv0: bytes | None = None
        acut = False
        if ex.z is not None and ex.z[0] is not None:
            argv0, acut = c_string(ex.z[0])
        script = ex.script == SCRIPT_YES
        if ex.script == SCRIPT_ASK and argv0 is not None:
            # The new image's argv[0] is the caller's unless an interpreter came in.
            first = area.split(b"\0", 1)[0]
            script = not (first.startswith(argv0) if acut else first == argv0)
        if ex.script != SCRIPT_NO and ex.z is None:
            truncated = True  # the Z line never came
        if script:
            truncated |= acut
        argv, interp, substituted = split_args(area, filename, script, argv0,
                                               filename_cut=fcut)
        truncated |= fcut or substituted
        return Exec.from_argv(
            ex.ts - self.offset, ex.pid, ex.ppid, ex.pgid, [from_bytes(a) for a in argv],
            filename=from_bytes(filename) if ex.filename is not None else None,
            interpreter=[from_bytes(a) for a in interp] if interp is not None else None,
            sid=ex.sid, uid=ex.uid, truncated=truncated,
        )


def boot_minus_mono() -> int:
    """CLOCK_BOOTTIME - CLOCK_MONOTONIC now (ns): time the machine spent suspended."""
    best: tuple[int, int] | None = None
    for _ in range(3):  # the pair read closest together
        a = time.monotonic_ns()
        b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        c = time.monotonic_ns()
        if best is None or c - a < best[0]:
            best = (c - a, b - (a + c) // 2)
    assert best is not None
    return best[1]


# ---------------------------------------------------------------------------
# The backend


def parse_cpu_list(text: str) -> list[int]:
    """A kernel CPU list ("0-3,6,8-9") -> [0, 1, 2, 3, 6, 8, 9]."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def online_cpus() -> list[int]:
    """The CPUs online now (each has a perf buffer bpftrace reads)."""
    try:
        with open(CPU_ONLINE) as f:
            cpus = parse_cpu_list(f.read())
    except (OSError, ValueError):
        cpus = []
    return cpus or sorted(os.sched_getaffinity(0))


@dataclass(slots=True)
class _Round:
    """One sync round: handshakes sent at `started` (monotonic ns), seq -> pinned CPU."""

    started: int
    want: dict[int, int]


def _die_with_parent() -> None:
    """In the bpftrace child: get SIGTERM when the recorder dies."""
    libc = ct.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


class BpftraceBackend(Backend):
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
        self.chunks = argv_chunks(config.argv_max)
        self.parser = Parser(self.chunks)
        self.tracer_tgid: int | None = None
        self.pidns_level = 0
        self.startup_s = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._script: Path | None = None
        self._err: Path | None = None
        self._libc = ct.CDLL(None, use_errno=True)
        self._h_sent = 0
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
        self._h_sent += 1

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

    def tracked(self) -> int | None:
        """Processes of the tree alive as far as every event read so far tells
        (after waiting for the pending sync round, or one started now)."""
        if self.config.tracer_pid is None or self._proc is None:
            return None
        self.sync()
        return len(self.parser.alive)

    def close(self) -> None:
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # runs END: maps cleared, not printed
                deadline = time.monotonic() + 5
                while proc.poll() is None and time.monotonic() < deadline:
                    self._read(0.05)  # it must not block on a full pipe while exiting
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self._proc = None
        for p in (self._script, self._err):
            if p is not None:
                with contextlib.suppress(OSError):
                    p.unlink()
        self._script = self._err = None


# ---------------------------------------------------------------------------
# `python -m proctrace_bcc.backends.bpftrace --check`: what `make bpf-check` runs


DRY_RUN_VERSION = (0, 22, 0)  # `--dry-run`; before it `--emit-elf FILE` compiles without loading


def compile_only(b: BpftraceBackend) -> None:
    """Compile b's script for its bpftrace without loading it (root: BTF and tracefs)."""
    with tempfile.TemporaryDirectory(prefix="proctrace-check-") as d:
        script = Path(d, "proctrace.bt")
        script.write_text(b.render())
        if b.version >= DRY_RUN_VERSION:
            mode = ["--dry-run"]
        else:
            mode = ["--emit-elf", str(Path(d, "proctrace.elf"))]
        env = dict(os.environ)
        env.update(script_env(b.version, b.config.buffer_pages))
        r = subprocess.run([b.binary, *mode, str(script), *b.params()], capture_output=True,
                           text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
        errors = [ln for ln in r.stderr.splitlines()
                  if "error" in ln.lower() and "RLIMIT_MEMLOCK" not in ln]
        if r.returncode != 0 or errors:
            first = (errors or r.stderr.splitlines() or [f"exit {r.returncode}"])[0]
            raise RecorderError(f"bpftrace could not compile the script (prepare_exec="
                                f"{b.prepare_exec}, initial pidns={b.init_pidns}): {first}")


def variants(bpftrace_path: str | None = None) -> list[BpftraceBackend]:
    """One backend per script variant this machine can load (exec detection x pid namespaces)."""
    out = []
    for prepare in ([True, False] if kernel_has_prepare_exec() else [False]):
        for init in ([True, False] if in_initial_pidns() else [False]):
            b = BpftraceBackend(BackendConfig(tracer_pid=os.getpid(), bpftrace_path=bpftrace_path))
            b.force_prepare_exec = prepare
            b.init_pidns = init
            out.append(b)
    return out


def check(bpftrace_path: str | None = None) -> list[str]:
    """Compile, verify, attach and handshake every variant (root); one line per variant."""
    lines = []
    for b in variants(bpftrace_path):
        try:
            b.start()
            probes = b.parser.attached
        finally:
            b.close()
        lines.append(f"ok: {b.binary} {version_str(b.version)}: {probes} probes live after "
                     f"{b.startup_s:.2f} s (sched_prepare_exec: {b.prepare_exec}, "
                     f"initial pid namespace: {b.init_pidns})")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["--check"] or len(args) > 2:
        print("usage: python -m proctrace_bcc.backends.bpftrace --check [BPFTRACE]",
              file=sys.stderr)
        return 2
    try:
        for line in check(args[1] if len(args) > 1 else None):
            print(line)
    except RecorderError as exc:
        print(f"proctrace-bcc: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
