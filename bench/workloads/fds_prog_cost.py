"""Where `record --fds` spends its time: BPF run time per program call, reader CPU.

    sudo .venv/bin/python bench/workloads/fds_prog_cost.py [--runs N] [--n N]
        [--held 0,100,250] [--program NAME=PATH ...]

For each configuration, the BCC backend is started in this process the way
`record` starts it (descendants of this process only), the kernel's BPF
run-time statistics are switched on (BPF_ENABLE_STATS: on only while this
process holds the descriptor it returns), and ``holdfds K storm.sh N 1`` runs
(K descriptors held by every process; K = 0: the storm alone) while this
process reads the perf buffer.  Per program, ``run_cnt`` and ``run_time_ns``
come from /proc/self/fdinfo of its descriptor, before and after.

Configurations: ``off`` (the recorder's program, WITH_FDS=0), ``fds``
(WITH_FDS=1) and, with ``--program NAME=PATH``, another BPF C source compiled
with WITH_FDS=1 and the same flags (to try a change to the fd loop without
touching bpf_programs/).  Rotated, ``--runs`` times; medians.

``--env``: ``env-none`` (``record`` without ``--env``) against ``env-tests``
(``record --env tests``, the runners' set), both without --fds, the storm alone; each process gets
PYTEST_CURRENT_TEST (one value copied per exec, as under pytest) and, per
``--extra-vars`` count, that many more variables (the search is linear in them).

Prints one JSON object: per held count and configuration, ns per call of the
exec, fork and exit programs, BPF ns per /bin/true in all programs together,
perf-buffer bytes per exec, the reader's CPU (this process, user+sys) per
exec, execs with their fd table, lost records.  The statistics themselves
add two clock reads per program call (tens of ns), the same in every
configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes as ct
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent.parent
WORKLOADS = ROOT / "bench" / "workloads"
HOLDFDS = ROOT / ".cache" / "bench" / "bin" / "holdfds"
BPF_ENABLE_STATS = 32
SYS_BPF = 321  # x86_64
PROGS = {"exec": "raw_tracepoint__sched_process_exec",
         "fork": "raw_tracepoint__sched_process_fork",
         "exit": "raw_tracepoint__sched_process_exit"}


def enable_stats() -> int:
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): a descriptor; statistics stay on while it is open."""
    libc = ct.CDLL(None, use_errno=True)
    attr = (ct.c_uint32 * 4)()  # union bpf_attr: enable_stats.type = 0 (run time)
    fd = int(libc.syscall(SYS_BPF, BPF_ENABLE_STATS, ct.byref(attr), 4))
    if fd < 0:
        raise SystemExit(f"BPF_ENABLE_STATS failed: {os.strerror(ct.get_errno())}")
    return fd


def prog_stats(fd: int) -> tuple[int, int]:
    cnt = ns = 0
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        k, _, v = line.partition(":")
        if k == "run_cnt":
            cnt = int(v)
        elif k == "run_time_ns":
            ns = int(v)
    return cnt, ns


def one_run(fds: bool, src_dir: Path | None, workload: list[str],
            env: tuple[str, ...] = (), extra: dict[str, str] | None = None) -> dict[str, Any]:
    from proctrace_bcc.backends import bcc as bccmod
    from proctrace_bcc.backends.base import BackendConfig
    from proctrace_bcc.backends.bcc import program as bccprog
    from proctrace_bcc.events import Exec, Lost

    rx = {"bytes": 0, "records": 0}
    orig_on_event = bccmod.BccBackend._on_event

    def counting(self: Any, cpu: int, data: int, size: int) -> None:
        rx["bytes"] += size
        rx["records"] += 1
        orig_on_event(self, cpu, data, size)

    bccmod.BccBackend._on_event = counting  # type: ignore[method-assign]
    try:
        with contextlib.ExitStack() as patches:
            if src_dir is not None:
                patches.enter_context(mock.patch.object(
                    bccprog, "program_path", lambda name: src_dir / name))
            be = bccmod.BccBackend(BackendConfig(tracer_pid=os.getpid(), fds=fds, env=env))
            be.start()
    finally:
        bccmod.BccBackend._on_event = orig_on_event  # type: ignore[method-assign]
    try:
        prog_fds = be.loaded.prog_fds if be.loaded is not None else {}
        progs = {k: prog_fds[name] for k, name in PROGS.items() if name in prog_fds}
        before = {k: prog_stats(fd) for k, fd in progs.items()}
        rx["bytes"] = rx["records"] = 0
        cpu0 = time.process_time()
        proc = subprocess.Popen(workload, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                env={**os.environ, **(extra or {})})
        events: list[Any] = []
        while proc.poll() is None:
            events += be.poll(50)
        events += be.poll(50)
        events += be.drain()
        cpu = time.process_time() - cpu0
        after = {k: prog_stats(fd) for k, fd in progs.items()}
    finally:
        be.close()
    execs = [e for e in events if isinstance(e, Exec)]
    out: dict[str, Any] = {
        "execs": len(execs),
        "execs_with_fds": sum(1 for e in execs if e.fds is not None),
        "execs_with_env": sum(1 for e in execs if e.env),
        "lost": sum(e.count for e in events if isinstance(e, Lost)),
        "perf_bytes": rx["bytes"], "perf_records": rx["records"], "reader_cpu_s": cpu,
    }
    for k in progs:
        dc = after[k][0] - before[k][0]
        out[f"{k}_calls"] = dc
        out[f"{k}_ns"] = after[k][1] - before[k][1]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=1000, help="/bin/true per storm (default 1000)")
    ap.add_argument("--held", default="0,100,250", help="descriptors held (default 0,100,250)")
    ap.add_argument("--program", action="append", default=[], metavar="NAME=PATH",
                    help="also measure this BPF C source (WITH_FDS=1)")
    ap.add_argument("--env", action="store_true",
                    help="measure `record --env` instead: no --env against --env tests "
                    "(no --fds); each process gets PYTEST_CURRENT_TEST")
    ap.add_argument("--extra-vars", default="0",
                    help="with --env: variables added to the workload's environment, one "
                    "measurement per count (default 0; e.g. 0,100)")
    args = ap.parse_args()
    if not HOLDFDS.exists():
        raise SystemExit(f"{HOLDFDS} missing: run bench/record_bench.py once (it builds it)")
    from proctrace_bcc.headers import find_header_tree
    from proctrace_bcc.programs import program_path

    os.environ["BCC_KERNEL_SOURCE"] = str(find_header_tree().path)
    from proctrace_bcc.envvars import RUNNERS

    configs: list[tuple[str, bool, Path | None]] = [("off", False, None), ("fds", True, None)]
    envs: dict[str, tuple[str, ...]] = {}
    if args.env:
        configs = [("env-none", False, None), ("env-tests", False, None)]
        envs = {"env-tests": RUNNERS}
    tmp = Path(tempfile.mkdtemp(prefix="fds_prog_cost."))
    for spec in args.program:
        name, _, path = spec.partition("=")
        d = tmp / name
        d.mkdir()
        shutil.copy(path, d / "proctrace.bpf.c")
        shutil.copy(program_path("proctrace.h"), d / "proctrace.h")
        configs.append((name, True, d))
    stats_fd = enable_stats()
    storm = ["/bin/sh", str(WORKLOADS / "storm.sh"), str(args.n), "1"]
    result: dict[str, Any] = {"n": args.n, "runs": args.runs, "held": {}}
    try:
        cases = ([(0, int(x)) for x in args.extra_vars.split(",")] if args.env
                 else [(int(x), 0) for x in args.held.split(",")])
        for held, nvars in cases:
            wl = storm if held == 0 else [str(HOLDFDS), str(held), *storm]
            extra = {f"BENCH_EXTRA_VARIABLE_{i}": f"value-{i}" for i in range(nvars)}
            if args.env:
                extra["PYTEST_CURRENT_TEST"] = "bench/env_prog_cost.py::test (call)"
            raw: dict[str, list[dict[str, Any]]] = {c[0]: [] for c in configs}
            for _ in range(args.runs):
                for name, fds, d in configs:
                    raw[name].append(one_run(fds, d, wl, envs.get(name, ()), extra))
            summ: dict[str, Any] = {}
            for name, rs in raw.items():
                s: dict[str, Any] = {}
                for k in PROGS:
                    if f"{k}_calls" in rs[0]:
                        s[f"{k}_ns_per_call"] = statistics.median(
                            r[f"{k}_ns"] / max(1, r[f"{k}_calls"]) for r in rs)
                s["bpf_ns_per_true"] = statistics.median(
                    sum(r.get(f"{k}_ns", 0) for k in PROGS) / args.n for r in rs)
                s["perf_bytes_per_exec"] = statistics.median(
                    r["perf_bytes"] / max(1, r["execs"]) for r in rs)
                s["reader_cpu_us_per_exec"] = statistics.median(
                    1e6 * r["reader_cpu_s"] / max(1, r["execs"]) for r in rs)
                s["execs"] = [r["execs"] for r in rs]
                s["execs_with_fds"] = [r["execs_with_fds"] for r in rs]
                s["execs_with_env"] = [r["execs_with_env"] for r in rs]
                s["lost"] = [r["lost"] for r in rs]
                summ[name] = s
            key = f"{len(os.environ) + len(extra)} variables" if args.env else str(held)
            result["held"][key] = {"summary": summ, "runs": raw}
            print(f"{'env' if args.env else 'held'} {key}: " + json.dumps(
                {n: {k: round(v, 1) if isinstance(v, float) else v for k, v in s.items()}
                 for n, s in summ.items()}), file=sys.stderr)
    finally:
        os.close(stats_fd)
        shutil.rmtree(tmp, ignore_errors=True)
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
