"""`python -m proctrace_bcc.backends.bcc --check`: compile every variant of the BPF C
(descendants only or system-wide, with and without --fds, with the default --env
set and with `--env none`), load it through the
verifier, attach and handshake, then detach (root; what `make bpf-check` runs)."""

from __future__ import annotations

import os
import sys
import time

from proctrace_bcc import envvars
from proctrace_bcc.backends.base import BackendConfig
from proctrace_bcc.backends.bcc.backend import BccBackend
from proctrace_bcc.errors import ProctraceError


def check() -> list[str]:
    """One line per variant that loaded; RecorderError/BackendUnavailable on the first failure."""
    out: list[str] = []
    for tracer_pid in (os.getpid(), None):
        for fds in (False, True):
            for env in (envvars.RUNNERS, ()):
                t0 = time.perf_counter()
                b = BccBackend(BackendConfig(tracer_pid=tracer_pid, fds=fds, env=env))
                try:
                    b.start()
                finally:
                    b.close()
                scope = "descendants" if tracer_pid is not None else "system-wide"
                opts = f"{' --fds' if fds else ''}{'' if env else ' --env none'}"
                out.append(f"bcc: {scope}{opts}: loaded, verified, attached, live "
                           f"({time.perf_counter() - t0:.1f} s)")
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["--check"]:
        print("usage: python -m proctrace_bcc.backends.bcc --check", file=sys.stderr)
        return 2
    try:
        for line in check():
            print(line, flush=True)
    except ProctraceError as exc:
        print(f"proctrace-bcc: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
