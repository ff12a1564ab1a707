"""The BCC backend: BPF C from bpf_programs/, perf buffer, ctypes decode.

`bcc` is imported lazily in `start()` so that everything else (analyze, tests
without root) works where BCC is absent.
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import os
import threading
import time
from pathlib import Path
from typing import Any

from proctrace_bcc.backends import abi
from proctrace_bcc.backends.argv import split_args
from proctrace_bcc.backends.base import Backend, BackendConfig
from proctrace_bcc.errors import BackendUnavailable, RecorderError
from proctrace_bcc.events import (
    Event,
    Exec,
    ExecFailed,
    Exit,
    FdInfo,
    Fork,
    Lost,
    SetPGID,
    SetSID,
    from_bytes,
)
from proctrace_bcc.procfs import fd_kind

BPF_DIR = Path(__file__).resolve().parent.parent.parent / "bpf_programs"
HANDSHAKE = 0x50544243  # prctl option no kernel knows ("PTBC"): returns EINVAL
WAKEUP_EVENTS = 64  # wake the reader once per this many events per CPU (then drain)
TRACED_MAX = 65536
ARGV_MAX_LIMIT = 49152  # argv + 3 paths + header must fit one perf record (64 KiB)
_HDR = ct.sizeof(abi.PtEvent)


def bpf_dir() -> Path:
    """bpf_programs/ in a source checkout, or the copy installed beside the package."""
    for cand in (BPF_DIR, Path(__file__).resolve().parent.parent / "bpf_programs"):
        if (cand / "proctrace.bpf.c").exists():
            return cand
    raise RecorderError(f"bpf_programs/proctrace.bpf.c not found (looked in {BPF_DIR})")


def decode_exec(ev: abi.PtEvent, payload: bytes) -> Exec:
    """Build an Exec from the raw event and its payload (see proctrace.h)."""
    o0, o1 = ev.len0, ev.len0 + ev.len1
    o2 = o1 + ev.len2
    o3 = o2 + ev.len3
    area, filename = payload[:o0], payload[o0:o1]
    truncated = bool(ev.flags & (abi.PT_F_TRUNCATED | abi.PT_F_ARGS_FAULT))
    argv0 = payload[o2:o3] if ev.flags & abi.PT_F_ARGV0 else None
    argv, interpreter, substituted = split_args(area, filename, bool(ev.flags & abi.PT_F_SCRIPT),
                                                argv0)
    truncated |= substituted  # argv[0] unreadable: the kernel's filename stands in
    return Exec.from_argv(
        ev.ts, ev.pid, ev.ppid, ev.pgid, [from_bytes(a) for a in argv],
        filename=from_bytes(filename),
        interpreter=[from_bytes(a) for a in interpreter] if interpreter is not None else None,
        sid=ev.sid, uid=ev.uid, truncated=truncated,
    )


def kernel_dev(dev: int) -> int:
    """A kernel dev_t (major << 20 | minor) in the userspace encoding st_dev uses."""
    return os.makedev(dev >> 20, dev & 0xFFFFF)


def decode_fds(ev: abi.PtEvent, payload: bytes) -> list[FdInfo]:
    n = min(ev.len0, len(payload)) // ct.sizeof(abi.PtFd)
    out: list[FdInfo] = []
    for i in range(n):
        f = abi.PtFd.from_buffer_copy(payload, i * ct.sizeof(abi.PtFd))
        if f.fd == abi.PT_FD_EMPTY:
            continue
        kind = fd_kind(f.mode, f.rdev >> 20)
        path: str | None = None
        if kind == "file":
            name = bytes(f.name).split(b"\0", 1)[0]
            path = from_bytes(name) if name else None
        elif kind == "tty" and (f.rdev >> 20) in range(136, 144):
            path = f"/dev/pts/{((f.rdev >> 20) - 136) * 1048576 + (f.rdev & 0xFFFFF)}"
        inherited = None if f.inherited == abi.PT_FD_INHERIT_UNKNOWN else bool(f.inherited)
        out.append(FdInfo(fd=f.fd, kind=kind, dev=kernel_dev(f.dev), ino=f.ino, path=path,
                          inherited=inherited, flags=f.flags))
    return out


def decode(data: int, size: int) -> Event | None:
    """Decode one perf-buffer record (address, size) into an event."""
    if size < _HDR:
        return None
    ev = abi.PtEvent.from_buffer_copy(ct.string_at(data, _HDR))
    t = ev.type
    if t == abi.PT_FORK:
        return Fork(ev.ts, ev.pid, ev.arg0, ev.pgid, child_pgid=ev.arg1, sid=ev.arg2)
    if t == abi.PT_EXEC:
        payload = ct.string_at(data + _HDR, size - _HDR)
        return decode_exec(ev, payload)
    if t == abi.PT_EXIT:
        code, sig, core = Exit.split_status(ev.arg0)
        return Exit(ev.ts, ev.pid, ev.ppid, ev.pgid, exit_code=code, signal=sig,
                    core_dumped=core)
    if t == abi.PT_EXEC_FAILED:
        name = ct.string_at(data + _HDR, min(ev.len1, size - _HDR))
        return ExecFailed(ev.ts, ev.pid, from_bytes(name), ev.arg0)
    if t == abi.PT_SETPGID:
        return SetPGID(ev.ts, ev.pid, ev.ppid, ev.arg1, target_pid=ev.arg0)
    if t == abi.PT_SETSID:
        return SetSID(ev.ts, ev.pid, ev.ppid, ev.pgid, sid=ev.arg0)
    return None


class BccBackend(Backend):
    name = "bcc"

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._bpf: Any = None
        self._pending: list[Event] = []
        self._awaiting: dict[int, Exec] = {}  # cpu -> exec whose PT_FDS record is next
        self._lost_total = 0
        self.header_tree: str = ""

    # -- program -------------------------------------------------------------

    def cflags(self) -> list[str]:
        from proctrace_bcc.offsets import defines, kernel_offsets

        c = self.config
        argv_max = max(4096, min(c.argv_max, ARGV_MAX_LIMIT))
        flags = [
            f"-I{bpf_dir()}",
            f"-DFILTER={0 if c.tracer_pid is None else 1}",
            f"-DHANDSHAKE={HANDSHAKE}",
            f"-DARGV_MAX={argv_max}",
            f"-DNCPU={os.cpu_count() or 1}",
            f"-DTRACED_MAX={TRACED_MAX}",
            f"-DWITH_FDS={1 if c.fds else 0}",
        ]
        return flags + defines(kernel_offsets())

    def program_text(self) -> str:
        src = (bpf_dir() / "proctrace.bpf.c").read_text()
        head = "\n".join(f"// cflag: {f}" for f in self.cflags())
        return f"{head}\n{src}"

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        try:
            import bcc
        except ImportError:
            raise BackendUnavailable(
                "bcc", "python module `bcc` not importable (Debian: apt-get install "
                "python3-bpfcc; use /usr/bin/python3 or a venv with --system-site-packages)"
            ) from None
        from proctrace_bcc.headers import find_header_tree

        tree = find_header_tree()
        os.environ["BCC_KERNEL_SOURCE"] = str(tree.path)
        self.header_tree = tree.how
        src = (bpf_dir() / "proctrace.bpf.c").read_text()
        try:
            self._bpf = bcc.BPF(text=src, cflags=self.cflags())
        except Exception as exc:  # BCC raises bare Exception on compile/load errors
            raise RecorderError(f"BCC could not load the BPF program: {exc}") from None
        self._bpf["events"].open_perf_buffer(
            self._on_event, page_cnt=self.config.buffer_pages, lost_cb=self._on_lost,
            wakeup_events=WAKEUP_EVENTS,
        )
        self._handshake()

    def _handshake(self) -> None:
        """Tell the kernel side who we are; proves the syscall probes are live."""
        libc = ct.CDLL(None, use_errno=True)
        cfg = self._bpf["config_map"]
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            libc.prctl(HANDSHAKE, 0, 0, 0, 0)
            v = cfg[ct.c_int(0)]
            if v.ready:
                self.pidns_level = int(v.level)
                self.tracer_tgid = int(v.tracer)
                return
            time.sleep(0.005)
        raise RecorderError("the BPF probes did not answer the start-up handshake within 5 s")

    def _on_event(self, cpu: int, data: int, size: int) -> None:
        if size >= _HDR and self.config.fds:
            hdr = abi.PtEvent.from_buffer_copy(ct.string_at(data, _HDR))
            if hdr.type == abi.PT_FDS:
                # The fd table of the exec just before it on this CPU.
                ex = self._awaiting.pop(cpu, None)
                if ex is not None:
                    if ex.pid == hdr.pid:
                        ex.fds = decode_fds(hdr, ct.string_at(data + _HDR, size - _HDR))
                    self._pending.append(ex)
                return
        ev = decode(data, size)
        if ev is None:
            return
        if isinstance(ev, Exec) and self.config.fds:
            prev = self._awaiting.pop(cpu, None)
            if prev is not None:  # its fd record was lost: keep the exec without fds
                self._pending.append(prev)
            self._awaiting[cpu] = ev
            return
        self._pending.append(ev)

    def _complete(self) -> None:
        """An exec waits for its fd record (written right after it): fetch it now."""
        for _ in range(20):
            if not self._awaiting:
                return
            time.sleep(0.0005)
            self._bpf.perf_buffer_consume()
        self._pending.extend(self._awaiting.values())
        self._awaiting.clear()

    def _on_lost(self, count: int) -> None:
        self._lost_total += count
        self._pending.append(Lost(time.monotonic_ns(), int(count)))

    def poll(self, timeout_ms: int) -> list[Event]:
        self._bpf.perf_buffer_poll(timeout=timeout_ms)
        self._bpf.perf_buffer_consume()  # wakeups are batched: take what is pending
        self._complete()
        out, self._pending = self._pending, []
        return out

    def drain(self) -> list[Event]:
        self._bpf.perf_buffer_consume()
        self._complete()
        out, self._pending = self._pending, []
        return out

    def tracked(self) -> int | None:
        if self._bpf is None or self.config.tracer_pid is None:
            return None
        return sum(1 for _, v in self._bpf["traced"].items() if v.value == 1)

    def kernel_stats(self) -> dict[str, int]:
        names = ["traced_map_full", "args_fault", "argv0_fault"]
        st = self._bpf["stats"]
        return {n: int(st[ct.c_int(i)].value) for i, n in enumerate(names)}

    def close(self) -> None:
        if self._bpf is None:
            return
        bpf, self._bpf = self._bpf, None
        detach_tracepoints(bpf)
        bpf.cleanup()  # the rest, and any tracepoint a thread could not detach


def detach_tracepoints(bpf: Any) -> None:
    """Detach every tracepoint of a bcc.BPF at once, one thread each.

    Detaching a (syscall) tracepoint waits for the kernel to finish with it, tens
    of ms each: the eight at once take 0.33 s instead of 0.52 s one after another
    (medians of 5 on this machine, bench/workloads/tracepoint_costs.py).
    """
    threads = [threading.Thread(target=_detach_quietly, args=(bpf, tp))
               for tp in list(bpf.tracepoint_fds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _detach_quietly(bpf: Any, tp: bytes) -> None:
    with contextlib.suppress(Exception):  # BCC raises bare Exception; cleanup() retries
        bpf.detach_tracepoint(tp)
