"""What the recorder's signal_generate program costs a fork+exec storm (issue 14).

    sudo .venv/bin/python bench/workloads/signal_prog_cost.py [--runs N] [--n N]

Every process of a storm sends its parent a SIGCHLD: signal_generate fires once per
process, and the program must give up at its first test (SIGCHLD is not a fatal
signal).  The recorder's whole program is loaded once by BCC (perf buffer open,
never read, no handshake), then storms run in paired rotation: with its
signal_generate raw tracepoint attached and detached, the order alternating.
Prints one JSON object: median wall and CPU time of each and their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STORM = Path(__file__).with_name("storm.sh")


def storm(n: int) -> tuple[float, float]:
    """Wall time and CPU time (user+sys of the tree, reaped) of one storm."""
    t = time.perf_counter()
    proc = subprocess.Popen(["sh", str(STORM), str(n), "2"])
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("storm failed")
    return wall, float(ru.ru_utime + ru.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    import bcc

    from proctrace_bcc.backends.base import BackendConfig
    from proctrace_bcc.backends.bcc import program
    from proctrace_bcc.headers import find_header_tree

    os.environ["BCC_KERNEL_SOURCE"] = str(find_header_tree().path)
    b = bcc.BPF(text=program.source(), cflags=program.cflags(BackendConfig(tracer_pid=os.getpid())))
    b["events"].open_perf_buffer(lambda cpu, data, size: None, page_cnt=256)
    runs: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
    attached = True
    for i in range(args.runs):
        for mode in ("with", "without") if i % 2 == 0 else ("without", "with"):
            if mode == "without" and attached:
                b.detach_raw_tracepoint(tp=b"signal_generate")
                attached = False
            elif mode == "with" and not attached:
                b.attach_raw_tracepoint(tp=b"signal_generate",
                                        fn_name=b"raw_tracepoint__signal_generate")
                attached = True
            runs[mode].append(storm(args.n))
    b.cleanup()
    out: dict[str, Any] = {"processes_per_storm": 2 * args.n + 3, "runs": args.runs}
    for mode, rs in runs.items():
        out[f"{mode}_wall_s"] = statistics.median(w for w, _ in rs)
        out[f"{mode}_cpu_s"] = statistics.median(c for _, c in rs)
    out["wall_ratio"] = out["with_wall_s"] / out["without_wall_s"]
    out["cpu_ratio"] = out["with_cpu_s"] / out["without_cpu_s"]
    out["paired_wall_ratio"] = statistics.median(w1 / w0 for (w1, _), (w0, _) in
                                                 zip(runs["with"], runs["without"], strict=True))
    json.dump({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()},
              sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
