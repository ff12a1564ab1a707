"""Which backend records: by name, or `auto` (BCC, else bpftrace, saying why once)."""

from __future__ import annotations

import importlib
import sys
from typing import TextIO

from proctrace_bcc.backends.base import Backend, BackendConfig
from proctrace_bcc.errors import BackendUnavailable, RecorderError, UsageError

BACKENDS = ("auto", "bcc", "bpftrace")


def check_name(name: str) -> None:
    """UsageError unless `name` is one of BACKENDS."""
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")


def make_backend(name: str, config: BackendConfig) -> Backend:
    """The backend `name` (`auto` means its first choice, BCC), not started."""
    check_name(name)
    if name in ("auto", "bcc"):
        from proctrace_bcc.backends.bcc import BccBackend

        return BccBackend(config)
    try:
        mod = importlib.import_module("proctrace_bcc.backends.bpftrace")
    except ImportError:
        raise BackendUnavailable("bpftrace", "this build has no bpftrace backend") from None
    backend: Backend = mod.BpftraceBackend(config)
    return backend


def start_backend(name: str, config: BackendConfig, warn: TextIO | None) -> Backend:
    """Start the named backend; `auto` tries BCC, then bpftrace (saying why, once).

    What the user should know goes to `warn` (None: stderr)."""
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
