"""Two costs of syscall tracepoints the recorder pays, isolated from the recorder.

    sudo .venv/bin/python bench/workloads/tracepoint_costs.py [--runs N]

1. The syscall tax: ``dd bs=1 count=1000000`` (2 M read/write syscalls) with
   nothing attached, against the same with empty BPF programs on the
   ``syscalls:sys_{enter,exit}_setsid`` tracepoints (a syscall dd never makes), and
   with the recorder's whole program attached (perf buffer open, never read,
   no handshake: no event is ever emitted), interleaved.  The differences are
   what every syscall on the machine pays for the syscall-tracing slow path
   once any syscall tracepoint is attached, and for the recorder's probes.
2. The detach cost: the recorder's program loaded by BCC, then its tracepoints
   detached one after the other (what ``BPF.cleanup()`` does) against all at
   once from one thread each; and what ``BccBackend.close()`` takes (it hands
   the detach to a helper process, backends/bcc/loader.py).

Prints one JSON object (medians in seconds, per-syscall tax in ns); dd is
measured by its CPU time (user+sys), the detaches by wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

DD = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=1000000", "status=none"]
SYSCALLS = 2_000_000


def dd_time() -> float:
    """CPU time (user+sys) of dd, the better of two runs: CPU time is less disturbed
    than wall time on a shared machine, and disturbances only ever add to it."""
    return min(_dd_once(), _dd_once())


def _dd_once() -> float:
    proc = subprocess.Popen(DD)
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"dd failed ({proc.returncode})")
    return float(ru.ru_utime + ru.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    import bcc

    from proctrace_bcc.backends.base import BackendConfig
    from proctrace_bcc.backends.bcc import BccBackend, program
    from proctrace_bcc.headers import find_header_tree

    os.environ["BCC_KERNEL_SOURCE"] = str(find_header_tree().path)
    out: dict[str, Any] = {}

    cflags = program.cflags(BackendConfig(tracer_pid=os.getpid()))
    src = program.source()
    bare: list[float] = []
    one_tp: list[float] = []
    full: list[float] = []
    for _ in range(args.runs):
        bare.append(dd_time())
        b = bcc.BPF(text="TRACEPOINT_PROBE(syscalls, sys_enter_setsid) { return 0; }\n"
                         "TRACEPOINT_PROBE(syscalls, sys_exit_setsid) { return 0; }")
        one_tp.append(dd_time())
        b.cleanup()
        # The recorder's whole program attached, its perf buffer open but never read,
        # no handshake (every probe returns at its first map lookup).
        b = bcc.BPF(text=src, cflags=cflags)
        b["events"].open_perf_buffer(lambda cpu, data, size: None, page_cnt=256)
        full.append(dd_time())
        b.cleanup()
    out["dd_bare_s"] = statistics.median(bare)
    out["dd_one_empty_syscall_tp_s"] = statistics.median(one_tp)
    out["dd_recorder_program_s"] = statistics.median(full)
    out["ratio"] = out["dd_one_empty_syscall_tp_s"] / out["dd_bare_s"]
    out["tax_ns_per_syscall"] = (out["dd_one_empty_syscall_tp_s"] - out["dd_bare_s"]) / SYSCALLS * 1e9
    out["program_ratio"] = out["dd_recorder_program_s"] / out["dd_bare_s"]
    out["program_tax_ns_per_syscall"] = (
        (out["dd_recorder_program_s"] - out["dd_bare_s"]) / SYSCALLS * 1e9
    )

    serial: list[float] = []
    parallel: list[float] = []
    for _ in range(max(1, args.runs // 2)):
        for how in ("serial", "parallel"):
            b = bcc.BPF(text=src, cflags=cflags)
            n = len(b.tracepoint_fds)
            t = time.perf_counter()
            if how == "parallel":
                threads = [threading.Thread(target=b.detach_tracepoint, args=(tp,))
                           for tp in list(b.tracepoint_fds)]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
            b.cleanup()
            (serial if how == "serial" else parallel).append(time.perf_counter() - t)
    handoff: list[float] = []
    for _ in range(max(1, args.runs // 2)):
        be = BccBackend(BackendConfig(tracer_pid=os.getpid()))
        be.start()
        t = time.perf_counter()
        be.close()
        handoff.append(time.perf_counter() - t)
    out["close_handoff_s"] = statistics.median(handoff)
    out["tracepoints"] = n
    out["detach_serial_s"] = statistics.median(serial)
    out["detach_parallel_s"] = statistics.median(parallel)
    json.dump({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()},
              sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
