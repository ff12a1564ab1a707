"""Start and stop of `record` (issue 16): what a user feels on every run.

    sudo .venv/bin/python bench/startup_bench.py [--runs N] [--configure-runs N]
        [--storm-n N] [--no-storm] [--no-configure] [--modes a,b] [--settle SECS]
        [--json PATH]

Modes, interleaved in rotation (one warm-up first, discarded): ``bcc-cold``
(`record --no-cache`: BCC compiles, offsets parsed from BTF, as on a kernel's
first run), ``bcc`` (warm: the cached program, no clang), ``bpftrace``, and
``untraced`` for the ratios.  Every run is ``record ... -- timed OUT CMD``
(bench/workloads/timed.c, via record_bench.Runner), which gives:

- start-up: `record` launched -> the first instruction of CMD;
- stop: CMD reaped -> `record` exited (End written, recording fsynced);
- end to end: `record` launched -> exited;
- recorder CPU: user+sys of `record` and its helpers, CMD's own excluded (what
  the wall times tend to on an idle machine: they also hold waiting for a CPU).

Workloads: ``/bin/true`` (also timed as a bare ``record -o F -- /bin/true``,
the figure of the issue), a fork+exec storm (bench/workloads/storm.sh, one
loop of N /bin/true), and GNU hello's ``./configure`` (record_bench's apt
source tree).  Ratios are end to end, start and stop included, against the
same workload untraced; medians with min-max.  Runs are --settle seconds apart
(default 1): a run's tracepoint detach goes on in its helper process for ~0.35 s
after `record` exits, and a start in that time waits for the kernel's lock
(--settle 0 measures that case).  The BCC cache is the one
`record` uses ($PROCTRACE_CACHE or /var/cache/proctrace-bcc).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record_bench as rb

MODES = ("untraced", "bcc-cold", "bcc", "bpftrace")


class Runner(rb.Runner):
    """record_bench's runner, with ``bcc-cold``: `record --backend bcc --no-cache`."""

    def command(self, mode: str, inner: list[str], rec: Path,
                buffer_pages: int | None) -> list[str]:
        if mode != "bcc-cold":
            return super().command(mode, inner, rec, buffer_pages)
        cmd = super().command("bcc", inner, rec, buffer_pages)
        cmd.insert(cmd.index("--"), "--no-cache")
        return cmd


def spread(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def fmt(s: dict[str, float] | None, unit: str = "s") -> str:
    if s is None:
        return "-"
    return f"{s['median']:.3f}{unit} ({s['min']:.3f}-{s['max']:.3f})"


def bare_true(mode: str, tmp: Path) -> float | None:
    """Wall time of `record -q -o F [--no-cache] --backend B -- /bin/true`."""
    if mode == "untraced":
        cmd = ["/bin/true"]
    else:
        cmd = [rb.PY, "-m", "proctrace_bcc", "record", "-q", "-o", str(tmp / "bare.ndjson"),
               "--backend", "bcc" if mode.startswith("bcc") else mode,
               *(["--no-cache"] if mode == "bcc-cold" else []), "--", "/bin/true"]
    t = time.monotonic()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, cwd=rb.ROOT)
    return time.monotonic() - t if p.returncode == 0 else None


def rotation(runner: Runner, modes: list[str], workload: list[str], runs: int,
             cwd: Path | None = None, bare: bool = False,
             settle: float = 0.0) -> dict[str, dict[str, Any]]:
    """Per mode: spreads of start-up, stop, end to end (and bare `record -- true`),
    each run `settle` seconds after the one before."""
    runner.run("bcc", workload, cwd)  # warm-up (fills the cache)
    got: dict[str, dict[str, list[float]]] = {
        m: {"startup": [], "stop": [], "end_to_end": [], "bare_true": [], "record_cpu": []}
        for m in modes}
    failed: dict[str, list[str]] = {m: [] for m in modes}
    for i in range(runs):
        for m in modes:
            time.sleep(settle)
            r = runner.run(m, workload, cwd)
            if not r.ok:
                failed[m].append(str(r.error))
            else:
                g = got[m]
                g["end_to_end"].append(r.outer_s)
                g["record_cpu"].append(r.outer_cpu_s - (r.inner_cpu_s or 0.0))
                if r.startup_s is not None:
                    g["startup"].append(r.startup_s)
                if r.shutdown_s is not None:
                    g["stop"].append(r.shutdown_s)
            if bare:
                time.sleep(settle)
                b = bare_true(m, runner.tmp)
                if b is not None:
                    got[m]["bare_true"].append(b)
            print(f"    [{i + 1}/{runs}] {m:<9} end to end {r.outer_s:.3f}s"
                  f"{'' if r.ok else '  FAILED: ' + str(r.error)}", file=sys.stderr)
    out: dict[str, dict[str, Any]] = {}
    base = got.get("untraced", {}).get("end_to_end", [])
    for m in modes:
        row: dict[str, Any] = {k: spread(v) for k, v in got[m].items()}
        e2e = got[m]["end_to_end"]
        if base and e2e and m != "untraced":
            row["ratio"] = spread([a / b for a, b in zip(e2e, base, strict=False)])
            row["ratio_of_medians"] = statistics.median(e2e) / statistics.median(base)
        row["failed"] = failed[m]
        out[m] = row
    return out


def show(title: str, res: dict[str, dict[str, Any]], bare: bool = False) -> None:
    print(f"\n{title}  (median (min-max))")
    cols = ["start-up", "stop", "end to end", *(["bare record -- true"] if bare else []),
            "end-to-end ratio", "recorder CPU"]
    print("  " + f"{'mode':<9}" + "".join(f"{c:>26}" for c in cols))
    for m, row in res.items():
        cells = [fmt(row["startup"]), fmt(row["stop"]), fmt(row["end_to_end"])]
        if bare:
            cells.append(fmt(row["bare_true"]))
        cells.append(fmt(row.get("ratio"), "x") if m != "untraced" else "1")
        cells.append(fmt(row["record_cpu"]) if m != "untraced" else "-")
        print("  " + f"{m:<9}" + "".join(f"{c:>26}" for c in cells))
        if row["failed"]:
            print(f"  {'':<9} {len(row['failed'])} failed: {row['failed'][0][:200]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="rotations per workload (>= 10)")
    ap.add_argument("--configure-runs", type=int, default=None,
                    help="rotations of ./configure (default: --runs)")
    ap.add_argument("--storm-n", type=int, default=2000, help="/bin/true in the storm")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds between runs (default 1): the tracepoint detach a run "
                    "hands to its helper process goes on ~0.35 s after `record` exits, "
                    "and a start meanwhile waits for the kernel's lock; 0: back to back")
    ap.add_argument("--no-configure", action="store_true", help="skip ./configure")
    ap.add_argument("--no-storm", action="store_true", help="skip the storm")
    ap.add_argument("--modes", default=",".join(MODES),
                    help=f"comma-separated subset of {','.join(MODES)}")
    ap.add_argument("--package", default="hello", help="Debian source package to configure")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("startup_bench: needs root (it runs `record`)")
    tools = rb.build_helpers()
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as d:
        runner = Runner(tools, Path(d), timeout=900.0)
        modes = [m for m in args.modes.split(",")
                 if m in MODES and (m != "bpftrace" or shutil.which("bpftrace"))]
        started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        results: dict[str, Any] = {
            "date": started, "kernel": platform.release(), "cpus": os.cpu_count(),
            "loadavg_before": rb.loadavg(), "command": " ".join(sys.argv), "runs": args.runs,
            "settle_s": args.settle}
        print(f"startup_bench {started}, kernel {platform.release()}, {os.cpu_count()} CPUs, "
              f"load {results['loadavg_before']}, {args.settle:g} s between runs")
        results["true"] = rotation(runner, modes, [rb.TRUE], args.runs, bare=True,
                                   settle=args.settle)
        show("record -- /bin/true", results["true"], bare=True)
        if not args.no_storm:
            storm = ["/bin/sh", str(rb.WORKLOADS / "storm.sh"), str(args.storm_n), "1"]
            results["storm"] = rotation(runner, modes, storm, args.runs, settle=args.settle)
            show(f"fork+exec storm: 1 loop x {args.storm_n} /bin/true", results["storm"])
        if not args.no_configure:
            tree = rb.configure_tree(args.package)
            results["configure"] = rotation(runner, modes, ["./configure"],
                                            args.configure_runs or args.runs, cwd=tree,
                                            settle=args.settle)
            show(f"./configure of {args.package}", results["configure"])
        results["loadavg_after"] = rb.loadavg()
        print(f"\nload average before {results['loadavg_before']}, "
              f"after {results['loadavg_after']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
