"""Where the BCC backend's start-up time goes, measured in one fresh process.

    .venv/bin/python bench/workloads/startup_profile.py LAUNCH_NS [--no-cache]   (root)

LAUNCH_NS is CLOCK_MONOTONIC (ns) just before the caller started this process.
Runs the real code path of `record --backend bcc` up to "probes are live"
(BccBackend.start), with timing wrappers around its steps, then closes the
backend, and prints one JSON object of phase durations in seconds:

- ``python``: interpreter start-up up to this script's first line;
- ``import_cli``: ``import proctrace_bcc.cli`` (the entry point; typer is imported
  only for the other commands and `record --help`);
- ``cli_parse``: record's plain parser (record_options.parse) reading a ``record``
  command line, run with ``--print-bpf``, which returns once parsed: that imports
  record.py and the backend modules too;
- ``import_record``: what is left of importing record.py and the BCC backend;
- ``btf``: kernel_offsets (the cached offsets; with --no-cache: parse
  /sys/kernel/btf/vmlinux and resolve them);
- ``cache``: the program's cache key and entry (read, digest checked, decoded);
- ``compile``: (only with --no-cache, or a cold cache) ``import bcc``, the header
  tree, and BCC's compile (clang + LLVM) with the image extracted (image.py);
- ``load_attach``: loader.Loaded (maps created, verifier load, tracepoints attached);
- ``perf_buffer``: one perf reader per CPU;
- ``handshake``: the prctl handshake until the probes answer;
- ``other``: the rest of BccBackend.start;
- ``close``: BccBackend.close (hands the detach to a helper process);
- ``trivial_compile``: (with --no-cache) a separate BPF() of a one-line program with
  the same header tree and flags: the fixed cost BCC pays for its own headers.

``startup_profile.py --variant trivial|user_read`` instead compiles only a
one-line program (with no call, or with one bpf_probe_read_user) in this
fresh process and prints its time: the difference is the /proc/kallsyms scan
BCC 0.26 makes, once per process, when a program calls bpf_probe_read_user.
"""

from __future__ import annotations

import time

T_FIRST = time.monotonic_ns()

import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

phases: dict[str, float] = {}


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - t

    return wrapper


def variant(name: str) -> int:
    """Compile one tiny program in this fresh process: BCC's fixed cost, and what one
    bpf_probe_read_user() adds (BCC 0.26 scans /proc/kallsyms once per process for it)."""
    import bcc

    from proctrace_bcc.headers import find_header_tree

    os.environ["BCC_KERNEL_SOURCE"] = str(find_header_tree().path)
    body = "bpf_probe_read_user(b, sizeof(b), ctx);" if name == "user_read" else ""
    text = ("#include <uapi/linux/ptrace.h>\n"
            f"int noop(void *ctx) {{ char b[8]; {body} return 0; }}\n")
    t = time.perf_counter()
    b = bcc.BPF(text=text)
    json.dump({name: round(time.perf_counter() - t, 4)}, sys.stdout)
    sys.stdout.write("\n")
    b.cleanup()
    return 0


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--variant":
        return variant(sys.argv[2])
    launch_ns = int(sys.argv[1]) if len(sys.argv) > 1 else T_FIRST
    cold = "--no-cache" in sys.argv[2:]
    phases["python"] = (T_FIRST - launch_ns) / 1e9

    t = time.perf_counter()
    import proctrace_bcc.cli
    import proctrace_bcc.record_options

    phases["import_cli"] = time.perf_counter() - t
    # record's plain parser reading a command line (--print-bpf: it returns once parsed)
    t = time.perf_counter()
    values = proctrace_bcc.record_options.parse(["--print-bpf", "-o", os.devnull, "--", "true"])
    assert values is not None
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        proctrace_bcc.cli.record(values)
    phases["cli_parse"] = time.perf_counter() - t
    t = time.perf_counter()
    import proctrace_bcc.backends.bcc as bccmod
    import proctrace_bcc.record
    from proctrace_bcc.backends.bcc import backend as bccbackend
    from proctrace_bcc.backends.bcc import cache as bcccache
    from proctrace_bcc.backends.bcc import program as bccprog

    phases["import_record"] = time.perf_counter() - t

    import proctrace_bcc.offsets as offsets
    from proctrace_bcc.backends.base import BackendConfig
    from proctrace_bcc.backends.bcc import loader

    offsets.kernel_offsets = timed("btf", offsets.kernel_offsets)
    bcccache.key = timed("cache", bcccache.key)
    bcccache.cached = timed("cache", bcccache.cached)
    bcccache.compile_and_store = timed("compile", bcccache.compile_and_store)
    # backend.py constructs through its own global name for the class
    vars(bccbackend)["Loaded"] = timed("load_attach", loader.Loaded)
    loader.Loaded.open_perf_buffer = timed(  # type: ignore[method-assign]
        "perf_buffer", loader.Loaded.open_perf_buffer)
    bccmod.BccBackend._handshake = timed(  # type: ignore[method-assign]
        "handshake", bccmod.BccBackend._handshake)

    backend = bccmod.BccBackend(BackendConfig(tracer_pid=os.getpid(), cache=not cold))
    t = time.perf_counter()
    backend.start()
    start_total = time.perf_counter() - t
    phases["total_to_live"] = (time.monotonic_ns() - launch_ns) / 1e9
    t = time.perf_counter()
    backend.close()
    phases["close"] = time.perf_counter() - t

    named = ("btf", "cache", "compile", "load_attach", "perf_buffer", "handshake")
    phases.setdefault("compile", 0.0)
    phases["other"] = start_total - sum(phases[k] for k in named)

    if cold:  # the fixed part: what BCC costs for a program that does nothing
        import bcc

        cflags = [f for f in bccprog.cflags(backend.config) if not f.startswith("-DOFF_")]
        trivial = "#include <uapi/linux/ptrace.h>\nint noop(void *ctx) { return 0; }\n"
        t = time.perf_counter()
        b = bcc.BPF(text=trivial, cflags=cflags)
        phases["trivial_compile"] = time.perf_counter() - t
        b.cleanup()

    json.dump({k: round(v, 4) for k, v in phases.items()}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
