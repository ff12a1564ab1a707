"""The interface every recording backend implements (BCC, bpftrace).

The recorder drives a backend like this::

    backend = make_backend(name, config)   # may raise BackendUnavailable
    backend.start()         # compile + attach; returns only once probes are live
    ... start CMD ...
    while recording:
        events = backend.poll(100)   # what arrived; any order across CPUs
    events = backend.drain()         # everything still buffered
    backend.close()

Timestamps of returned events are absolute CLOCK_MONOTONIC nanoseconds
(bpf_ktime_get_ns / bpftrace nsecs); the recorder reorders across CPUs and
rebases them to the start of the recording.  Losses come back as `Lost`
events, never silently.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from proctrace_bcc.events import Event

# Bytes of a new image's argument area kept per exec (--argv-max is clamped to these):
# argv, three paths and the header must fit one perf record (64 KiB).
ARGV_MAX_FLOOR = 4096
ARGV_MAX_LIMIT = 49152


@dataclass(slots=True)
class BackendConfig:
    # Trace only descendants of this tgid (the recorder itself: its first child
    # is CMD).  None: every process on the machine (system-wide / --raw).
    tracer_pid: int | None
    fds: bool = False
    argv_max: int = ARGV_MAX_LIMIT
    buffer_pages: int = 256
    bpftrace_path: str | None = None
    # BCC: load the compiled program from the cache if it holds it (False: compile).
    cache: bool = True
    # Environment variables whose values each exec records (record --env); () = none.
    env: tuple[str, ...] = ()

    def argv_bytes(self) -> int:
        """--argv-max within ARGV_MAX_FLOOR..ARGV_MAX_LIMIT (both backends keep this many)."""
        return max(ARGV_MAX_FLOOR, min(self.argv_max, ARGV_MAX_LIMIT))


class Backend(abc.ABC):
    name: str = "?"
    # The recorder's tgid as the kernel side sees it (its pid namespace): None until
    # start() has learnt it (from the start-up handshake).
    tracer_tgid: int | None

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.tracer_tgid = None
        # What the user should know about this backend here (printed once by `record`).
        self.notices: list[str] = []

    @abc.abstractmethod
    def start(self) -> None:
        """Compile and attach. Must not return before probes are live."""

    @abc.abstractmethod
    def poll(self, timeout_ms: int) -> list[Event]:
        """Wait up to timeout_ms for events; return what arrived (possibly nothing)."""

    @abc.abstractmethod
    def drain(self) -> list[Event]:
        """Return every event still buffered, without waiting for new ones."""

    def synced_until(self) -> int | None:
        """A CLOCK_MONOTONIC time (ns) such that every event stamped before it has been
        returned by poll() (None: the backend cannot tell; the recorder then trusts
        that what was emitted before one poll has arrived by the end of the next)."""
        return None

    def tracked(self) -> int | None:
        """How many traced processes the kernel side's map holds: a count only when that
        map is authoritative (kept by the kernel, so lost events cannot skew it), else
        None (the recorder then judges from the events and /proc)."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Detach and free everything. Idempotent."""

    def program_text(self) -> str:
        """The generated program (BPF C or bpftrace script), for --print-bpf."""
        return ""
