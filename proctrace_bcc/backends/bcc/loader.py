"""An image (image.py) made live through libbcc_bpf's C API: maps created, map fds
written into the instructions, programs loaded through the verifier and attached
to their tracepoints, perf buffers opened; then map lookups, polling and closing.

Closing returns at once: detaching a tracepoint waits for the kernel (an RCU
grace period each, ~0.34 s for all of them), so the attachment descriptors are
handed to a detached grandchild process that closes them (in parallel) and exits,
while the recorder's own copies are closed without cost (the kernel object lives
while a descriptor refers to it).  Nothing stays attached once that process has
gone, a fraction of a second later.
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import os
import struct
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from proctrace_bcc.backends.bcc import libbcc
from proctrace_bcc.backends.bcc.image import INSN, Image
from proctrace_bcc.errors import RecorderError

ONLINE_CPUS = Path("/sys/devices/system/cpu/online")


def online_cpus(text: str | None = None) -> list[int]:
    """The CPUs of "0-3,5" (default: the online ones)."""
    out: list[int] = []
    for part in (ONLINE_CPUS.read_text() if text is None else text).strip().split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


class Loaded:
    """The live maps and programs of one image (see the module's doc)."""

    def __init__(self, image: Image) -> None:
        self._lib = libbcc.lib()
        self.image = image
        self.map_fds: list[int] = []
        self.prog_fds: dict[str, int] = {}
        self._attach_fds: list[int] = []
        self._readers: list[int] = []
        self._callbacks: list[object] = []  # the C callbacks must outlive the readers
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        """Maps, then programs, each kind created in parallel (the kernel's work, map
        preallocation and the verifier, runs without the GIL: one thread each)."""
        lib = self._lib
        maps = _parallel([partial(lib.bcc_create_map, m.type, m.name.encode(), m.key_size,
                                  m.value_size, m.max_entries, m.flags)
                          for m in self.image.maps])
        self.map_fds = [fd for fd, _ in maps if fd >= 0]
        for m, (fd, err) in zip(self.image.maps, maps, strict=True):
            if fd < 0:
                raise RecorderError(f"cannot create BPF map {m.name}: {os.strerror(err)}")
        lic = self.image.license.encode()
        bufs = []
        for p in self.image.progs:
            insns = bytearray(p.insns)
            for i, mi in p.relocs:
                struct.pack_into("<i", insns, i * INSN + 4, self.map_fds[mi])
            bufs.append((ct.c_char * len(insns)).from_buffer(insns))
        progs = _parallel([partial(lib.bcc_prog_load, p.prog_type, p.name.encode(), b, len(b),
                                   lic, self.image.kern_version, 0, None, 0)
                           for p, b in zip(self.image.progs, bufs, strict=True)])
        self.prog_fds = {p.name: fd for p, (fd, _) in zip(self.image.progs, progs, strict=True)
                         if fd >= 0}
        for p, (fd, err) in zip(self.image.progs, progs, strict=True):
            if fd < 0:
                raise RecorderError(f"the kernel refused BPF program {p.name}: "
                                    f"{os.strerror(err)}")
        for p in self.image.progs:
            fd = self.prog_fds[p.name]
            if ":" in p.tracepoint:
                category, _, event = p.tracepoint.partition(":")
                afd = lib.bpf_attach_tracepoint(fd, category.encode(), event.encode())
            else:
                afd = lib.bpf_attach_raw_tracepoint(fd, p.tracepoint.encode())
            if afd < 0:
                raise RecorderError(f"cannot attach {p.name} to {p.tracepoint}: "
                                    f"{os.strerror(ct.get_errno())}")
            self._attach_fds.append(afd)

    def map_fd(self, name: str) -> int:
        return self.map_fds[self.image.map_index(name)]

    # -- perf buffers ---------------------------------------------------------

    def open_perf_buffer(self, name: str, on_event: Callable[[int, int, int], None],
                         on_lost: Callable[[int], None], page_cnt: int,
                         wakeup_events: int) -> None:
        """One perf reader per online CPU in the PERF_EVENT_ARRAY `name`; on_event(cpu,
        address, size) and on_lost(count) run from poll()/consume()."""
        if page_cnt <= 0 or page_cnt & (page_cnt - 1):
            raise RecorderError(f"perf buffer pages must be a power of two, not {page_cnt}")
        lost = libbcc.LOST_CB(lambda _cookie, count: on_lost(int(count)))
        self._callbacks.append(lost)
        for cpu in online_cpus():
            raw = libbcc.RAW_CB(
                lambda _cookie, data, size, cpu=cpu: on_event(cpu, int(data or 0), int(size)))
            self._callbacks.append(raw)
            opts = libbcc.PerfBufferOpts(pid=-1, cpu=cpu, wakeup_events=wakeup_events)
            reader = self._lib.bpf_open_perf_buffer_opts(raw, lost, None, page_cnt,
                                                         ct.byref(opts))
            if not reader:
                raise RecorderError(f"cannot open the perf buffer of CPU {cpu}: "
                                    f"{os.strerror(ct.get_errno())}")
            self._readers.append(reader)
            self.update(name, ct.c_int(cpu), ct.c_int(self._lib.perf_reader_fd(reader)))
        self._reader_array = (ct.c_void_p * len(self._readers))(*self._readers)

    def poll(self, timeout_ms: int) -> None:
        """Wait up to timeout_ms for a reader to have data, and read the ready ones."""
        self._lib.perf_reader_poll(len(self._readers), self._reader_array, timeout_ms)

    def consume(self) -> None:
        """Read what every reader holds, without waiting."""
        self._lib.perf_reader_consume(len(self._readers), self._reader_array)

    # -- maps -----------------------------------------------------------------

    def lookup(self, name: str, key: ct._CData, value: ct._CData) -> bool:
        """Fill `value` with the entry `key` of map `name`; False if there is none."""
        return bool(self._lib.bpf_lookup_elem(self.map_fd(name), ct.byref(key),
                                              ct.byref(value)) == 0)

    def update(self, name: str, key: ct._CData, value: ct._CData) -> None:
        """Set the entry `key` of map `name` to `value`; RecorderError if the kernel refuses."""
        if self._lib.bpf_update_elem(self.map_fd(name), ct.byref(key), ct.byref(value), 0) < 0:
            raise RecorderError(f"cannot write BPF map {name}: {os.strerror(ct.get_errno())}")

    def keys(self, name: str, key_type: type[ct._SimpleCData[int]]) -> Iterator[int]:
        """Every key of the hash map `name` (entries changing meanwhile may be missed)."""
        fd = self.map_fd(name)
        key = key_type()
        prev: ct._CData | None = None
        while self._lib.bpf_get_next_key(fd, None if prev is None else ct.byref(prev),
                                         ct.byref(key)) == 0:
            yield int(key.value)
            prev = key_type(key.value)

    # -- end ------------------------------------------------------------------

    def close(self) -> None:
        """Free everything; the detach itself finishes in another process (module doc)."""
        for reader in self._readers:
            self._lib.perf_reader_free(reader)
        self._readers.clear()
        fds = self._attach_fds + list(self.prog_fds.values()) + self.map_fds
        closed = False
        if self._attach_fds:
            # OSError: no helper process (fork failed): we wait for the detach ourselves
            with contextlib.suppress(OSError), hand_off(self._attach_fds):
                _close(fds)
                closed = True
        if not closed:
            _close(fds)
        self._attach_fds.clear()
        self.prog_fds.clear()
        self.map_fds.clear()


def _parallel(calls: list[Callable[[], Any]]) -> list[tuple[int, int]]:
    """Run each call (returning an fd, < 0 on error) in a thread of its own:
    [(fd, errno)] in order."""
    out = [(-1, 0)] * len(calls)

    def run(i: int) -> None:
        r = int(calls[i]())
        out[i] = (r, ct.get_errno() if r < 0 else 0)  # errno is per thread

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _close(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@contextlib.contextmanager
def hand_off(fds: list[int]) -> Iterator[None]:
    """Let a detached grandchild close `fds` (one thread each) once the body has closed
    ours, so that it, not we, drops the last reference (and waits for the kernel).

    Double fork: the child exits at once (reaped here), so the grandchild is nobody's
    child of ours and outlives us without a zombie; it keeps no other descriptor (no
    pipe of the caller stays open because of it) and waits for EOF on a pipe whose
    write end only we hold: that comes when the body is done (or we die)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            if os.fork() == 0:  # grandchild
                os.setsid()
                keep = {*fds, r}
                null = os.open(os.devnull, os.O_RDWR)
                for std in (0, 1, 2):
                    os.dup2(null, std)
                for fd in _open_fds():
                    if fd > 2 and fd not in keep:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                os.read(r, 1)  # EOF: the recorder has closed its copies
                threads = [threading.Thread(target=os.close, args=(fd,)) for fd in fds]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        finally:
            os._exit(0)
    os.close(r)
    with contextlib.suppress(ChildProcessError):  # SIGCHLD ignored: reaped already
        os.waitpid(pid, 0)
    try:
        yield
    finally:
        os.close(w)


def _open_fds() -> list[int]:
    return [int(n) for n in os.listdir("/proc/self/fd")]
