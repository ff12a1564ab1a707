"""The BCC program: bpf_programs/proctrace.bpf.c and the -D cflags it is built with
(build options from the recorder's config, kernel struct offsets from BTF)."""

from __future__ import annotations

import os

from proctrace_bcc import offsets
from proctrace_bcc.backends.base import BackendConfig
from proctrace_bcc.programs import program_path

SOURCE = "proctrace.bpf.c"
HANDSHAKE = 0x50544243  # prctl option no kernel knows ("PTBC"): returns EINVAL
TRACED_MAX = 65536
ARGV_MAX_LIMIT = 49152  # argv + 3 paths + header must fit one perf record (64 KiB)


def source() -> str:
    """The BPF C text (without the cflags)."""
    return program_path(SOURCE).read_text()


def cflags(config: BackendConfig) -> list[str]:
    """Every -I/-D flag BCC compiles the program with."""
    argv_max = max(4096, min(config.argv_max, ARGV_MAX_LIMIT))
    flags = [
        f"-I{program_path('proctrace.h').parent}",
        f"-DFILTER={0 if config.tracer_pid is None else 1}",
        f"-DHANDSHAKE={HANDSHAKE}",
        f"-DARGV_MAX={argv_max}",
        f"-DNCPU={os.cpu_count() or 1}",
        f"-DTRACED_MAX={TRACED_MAX}",
        f"-DWITH_FDS={1 if config.fds else 0}",
    ]
    return flags + offsets.defines(offsets.kernel_offsets(use_cache=config.cache))


def program_text(config: BackendConfig) -> str:
    """The program as --print-bpf shows it: its cflags as comments, then the source."""
    head = "\n".join(f"// cflag: {f}" for f in cflags(config))
    return f"{head}\n{source()}"
