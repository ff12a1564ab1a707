"""BccBackend: get the program's image (cache.py: stored, else compiled by BCC),
make it live (loader.py), read its perf buffer, decode each record (decode.py),
handshake at start, detach at close.  Programs loaded from the cache and freshly
compiled ones go through the same loader, callbacks and decoder.

`bcc` is imported only to compile (image.py), so that everything else (analyze,
tests without root, a warm start) works without it.
"""

from __future__ import annotations

import ctypes as ct
import time

from proctrace_bcc.backends import abi
from proctrace_bcc.backends.base import Backend, BackendConfig
from proctrace_bcc.backends.bcc import cache, program
from proctrace_bcc.backends.bcc.decode import decode, decode_fds, header, payload
from proctrace_bcc.backends.bcc.loader import Loaded
from proctrace_bcc.errors import RecorderError
from proctrace_bcc.events import Event, Exec, Lost

WAKEUP_EVENTS = 64  # wake the reader once per this many events per CPU (then drain)


class Config(ct.Structure):
    """struct config of proctrace.bpf.c (config_map[0])."""

    _fields_ = [("ready", ct.c_uint32), ("level", ct.c_uint32), ("inum", ct.c_uint32),
                ("tracer", ct.c_uint32)]


class BccBackend(Backend):
    name = "bcc"

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.loaded: Loaded | None = None
        self.from_cache = False  # whether start() loaded a cached image
        self._pending: list[Event] = []
        self._awaiting: dict[int, Exec] = {}  # cpu -> exec whose PT_FDS record is next

    def program_text(self) -> str:
        return program.program_text(self.config)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        text, flags = program.source(), program.cflags(self.config)
        k = cache.key(text, flags)
        image = cache.cached(k, self.notices) if self.config.cache else None
        try:
            if image is not None:
                try:
                    self.loaded = Loaded(image)
                    self.from_cache = True
                except RecorderError as exc:
                    self.notices.append(f"the cached program did not load ({exc}); compiling")
            if self.loaded is None:
                self.loaded = Loaded(cache.compile_and_store(text, flags, k, self.notices))
            self.loaded.open_perf_buffer("events", self._on_event, self._on_lost,
                                         self.config.buffer_pages, WAKEUP_EVENTS)
            if self.config.env:  # the chosen variables, before anything is emitted
                program.fill_env(self.loaded, self.config.env)
            self._handshake(self.loaded)
        except BaseException:
            self.close()
            raise

    def _handshake(self, loaded: Loaded) -> None:
        """Tell the kernel side who we are; proves the syscall probes are live."""
        libc = ct.CDLL(None, use_errno=True)
        v, zero = Config(), ct.c_int(0)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            libc.prctl(program.HANDSHAKE, 0, 0, 0, 0)
            if loaded.lookup("config_map", zero, v) and v.ready:
                self.tracer_tgid = int(v.tracer)
                return
            time.sleep(0.005)
        raise RecorderError("the BPF probes did not answer the start-up handshake within 5 s")

    def _on_event(self, cpu: int, data: int, size: int) -> None:
        if self.config.fds:
            hdr = header(data, size)
            if hdr is not None and hdr.type == abi.PT_FDS:
                # The fd table of the exec just before it on this CPU.
                ex = self._awaiting.pop(cpu, None)
                if ex is not None:
                    if ex.pid == hdr.pid:
                        ex.fds = decode_fds(hdr, payload(data, size))
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
            self._live().consume()
        self._pending.extend(self._awaiting.values())
        self._awaiting.clear()

    def _on_lost(self, count: int) -> None:
        self._pending.append(Lost(time.monotonic_ns(), int(count)))

    def _live(self) -> Loaded:
        if self.loaded is None:
            raise RecorderError("the BCC backend is not started")
        return self.loaded

    def poll(self, timeout_ms: int) -> list[Event]:
        live = self._live()
        live.poll(timeout_ms)
        live.consume()  # wakeups are batched: take what is pending
        self._complete()
        out, self._pending = self._pending, []
        return out

    def drain(self) -> list[Event]:
        self._live().consume()
        self._complete()
        out, self._pending = self._pending, []
        return out

    def tracked(self) -> int | None:
        """The kernel's own `traced` map (authoritative: no lost event can skew it)."""
        if self.loaded is None or self.config.tracer_pid is None:
            return None
        live, v = self.loaded, ct.c_uint8()
        return sum(1 for k in list(live.keys("traced", ct.c_uint32))
                   if live.lookup("traced", ct.c_uint32(k), v) and v.value == 1)

    def close(self) -> None:
        """Free everything at once; the detach finishes in the background (loader.py)."""
        loaded, self.loaded = self.loaded, None
        if loaded is not None:
            loaded.close()
