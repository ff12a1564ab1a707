"""BccBackend: load and attach the program (program.py), read its perf buffer,
decode each record (decode.py), handshake at start, detach at close.

`bcc` is imported lazily in `start()` so that everything else (analyze, tests
without root) works where BCC is absent.
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import os
import threading
import time
from typing import Any

from proctrace_bcc.backends import abi
from proctrace_bcc.backends.base import Backend, BackendConfig
from proctrace_bcc.backends.bcc import program
from proctrace_bcc.backends.bcc.decode import decode, decode_fds, header, payload
from proctrace_bcc.errors import BackendUnavailable, RecorderError
from proctrace_bcc.events import Event, Exec, Lost

WAKEUP_EVENTS = 64  # wake the reader once per this many events per CPU (then drain)


class BccBackend(Backend):
    name = "bcc"

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._bpf: Any = None
        self._pending: list[Event] = []
        self._awaiting: dict[int, Exec] = {}  # cpu -> exec whose PT_FDS record is next

    def program_text(self) -> str:
        return program.program_text(self.config)

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

        os.environ["BCC_KERNEL_SOURCE"] = str(find_header_tree().path)
        try:
            self._bpf = bcc.BPF(text=program.source(), cflags=program.cflags(self.config))
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
            libc.prctl(program.HANDSHAKE, 0, 0, 0, 0)
            v = cfg[ct.c_int(0)]
            if v.ready:
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
            self._bpf.perf_buffer_consume()
        self._pending.extend(self._awaiting.values())
        self._awaiting.clear()

    def _on_lost(self, count: int) -> None:
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
        """The kernel's own `traced` map (authoritative: no lost event can skew it)."""
        if self._bpf is None or self.config.tracer_pid is None:
            return None
        return sum(1 for _, v in self._bpf["traced"].items() if v.value == 1)

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
