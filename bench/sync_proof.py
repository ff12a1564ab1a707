"""Is bpftrace's "everything before now has been read" proof right, and what does it cost?

    sudo .venv/bin/python bench/sync_proof.py [--repeat 10] [--storm-n 2000]

1. Proof.  bpftrace is stopped (SIGSTOP), one record is written on the first
   CPU (so that bpftrace's epoll lists that CPU's buffer first), a traced
   process pinned to the last CPU makes BURST setpgid calls, then the proof is
   asked for and bpftrace continued.  When the proof comes back, how many of
   the BURST records (all stamped before it was asked for) have been read?
   ``one CPU``: one handshake from the first CPU (what `sync()` did before
   issue 4's fix: the recorder's thread, wherever it ran); ``every CPU``: the
   per-CPU round `BpftraceBackend.sync()` sends now.
2. Cost.  How long a sync round takes idle, and during ``storm.sh N 2`` (two
   parallel loops of /bin/true) with the backend polled as `record` polls it.

Run it under ``flock /tmp/proctrace-heavy.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proctrace_bcc.backends import bpftrace as bt  # noqa: E402
from proctrace_bcc.backends.base import BackendConfig  # noqa: E402
from proctrace_bcc.events import SetPGID  # noqa: E402

BURST = 4000


def burst_on(cpu: int) -> list[str]:
    code = (f"import os\nos.sched_setaffinity(0, {{{cpu}}})\n"
            f"for _ in range({BURST}):\n    os.setpgid(0, 0)\n")
    return [sys.executable, "-c", code]


def pinned(cpu: int, fn: object) -> None:
    mask = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        fn()  # type: ignore[operator]
    finally:
        os.sched_setaffinity(0, mask)


def proof_once(b: bt.BpftraceBackend, every_cpu: bool) -> tuple[int, int]:
    """(BURST records read when the proof came, lost)."""
    assert b._proc is not None
    cpus = bt.online_cpus()
    b.sync(10.0)
    b.parser.take()
    lost0 = b.parser.lost
    os.kill(b._proc.pid, signal.SIGSTOP)
    try:
        pinned(cpus[0], lambda: b._prctl(0))
        subprocess.run(burst_on(cpus[-1]), check=True)
        if every_cpu:
            b._start_round()
        else:  # one handshake, from the first CPU
            b._seq += 1
            seq = b._seq
            pinned(cpus[0], lambda: b._prctl(seq))
            b._round = bt._Round(time.monotonic_ns(), {seq: cpus[0]})
        assert b._round is not None
        asked = b._round.started
    finally:
        os.kill(b._proc.pid, signal.SIGCONT)
    assert b.sync(30.0)
    n = sum(1 for e in b.parser.take() if isinstance(e, SetPGID) and e.timestamp < asked)
    return n, b.parser.lost - lost0


def cost(b: bt.BpftraceBackend, storm_n: int) -> dict[str, float]:
    idle = []
    for _ in range(200):
        t = time.monotonic_ns()
        assert b.sync(1.0, fresh=True)
        idle.append(time.monotonic_ns() - t)
    rounds0, total0 = b.sync_rounds, b.sync_ns_total
    b.sync_ns_max = 0
    storm = subprocess.Popen(["/bin/sh", str(ROOT / "bench" / "workloads" / "storm.sh"),
                              str(storm_n), "2"])
    polls = []
    while storm.poll() is None:
        t = time.monotonic_ns()
        b.poll(100)
        polls.append(time.monotonic_ns() - t)
    b.drain()
    rounds = b.sync_rounds - rounds0
    return {
        "idle_median_ms": statistics.median(idle) / 1e6,
        "idle_max_ms": max(idle) / 1e6,
        "storm_rounds": rounds,
        "storm_polls": len(polls),
        "storm_round_mean_ms": (b.sync_ns_total - total0) / max(1, rounds) / 1e6,
        "storm_round_max_ms": b.sync_ns_max / 1e6,
        "storm_poll_median_ms": statistics.median(polls) / 1e6 if polls else 0.0,
        "lost": b.parser.lost,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--storm-n", type=int, default=2000)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    if len(bt.online_cpus()) < 2:
        print("needs 2 CPUs", file=sys.stderr)
        return 2
    b = bt.BpftraceBackend(BackendConfig(tracer_pid=os.getpid()))
    b.start()
    try:
        print(f"1. proof: bpftrace stopped, {BURST} records on CPU {bt.online_cpus()[-1]}, "
              f"{args.repeat} times each (load {os.getloadavg()[0]:.2f})")
        for every in (False, True):
            got = [proof_once(b, every) for _ in range(args.repeat)]
            early = sum(1 for n, _ in got if n < BURST)
            print(f"   {'every CPU' if every else 'one CPU  '}: proof came before all of the "
                  f"burst was read in {early} of {args.repeat} (read then: "
                  f"{sorted(n for n, _ in got)}; lost {sum(lost for _, lost in got)})")
        c = cost(b, args.storm_n)
        print(f"2. cost: idle round median {c['idle_median_ms']:.2f} ms (max "
              f"{c['idle_max_ms']:.2f}); during storm.sh {args.storm_n} 2: "
              f"{c['storm_rounds']} rounds in {c['storm_polls']} polls, mean "
              f"{c['storm_round_mean_ms']:.1f} ms, max {c['storm_round_max_ms']:.1f} ms, "
              f"poll median {c['storm_poll_median_ms']:.1f} ms, lost {c['lost']} "
              f"(load {os.getloadavg()[0]:.2f})")
    finally:
        b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
