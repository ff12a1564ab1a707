"""What a SIGKILL of the recorder loses (issue 13 item 7), per recorder setting.

    sudo .venv/bin/python bench/sigkill_loss.py [--runs N] [--variant NAME=BUSY_MS]...
    sudo .venv/bin/python bench/sigkill_loss.py --overhead 2000 [--runs N]   # its cost

Each run records a fork+exec storm (bench/workloads/storm.sh, one loop) with the BCC
backend, SIGKILLs the recorder 2-3 s in (the moment varies per run), and measures the
*window*: from the newest event in the file to the kill, on the recorder's clock (the
Header's start_time is taken right after t0, so t0 on our monotonic clock is known
to ~1 ms).  Events of that window are what the kill lost (they were in the perf
buffers or in the reorder buffer, not yet written); `procs` is the window times the
storm's rate in the same recording.  Variants run interleaved (A, B, A, B, ...), and
each figure is the median over the runs.  A variant sets record.POLL_BUSY_MS (how long
a poll waits after one that brought events) in the recorder process; the default
compares the current 20 ms with 100 ms (the fixed poll before issue 13).

``--overhead N`` measures what the variants cost instead: the storm of N /bin/true
timed from inside (bench/workloads/timed.c, as bench/record_bench.py's storm section;
run that once first to build it), untraced and under each variant, in rotation.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORM = ROOT / "bench" / "workloads" / "storm.sh"
RUNNER = """
import sys
import proctrace_bcc.record as r
r.POLL_BUSY_MS = int(sys.argv[1])
sys.argv = ["proctrace-bcc", *sys.argv[2:]]
from proctrace_bcc.cli import main
main()
"""


def one(busy_ms: int, d: Path, rng: random.Random) -> tuple[float, float]:
    """(window ms, processes in it) of one killed recording."""
    out = d / "r.ndjson"
    argv = [sys.executable, "-c", RUNNER, str(busy_ms), "record", "-q",
            "--backend", "bcc", "-o", str(out), "--", "sh", str(STORM), "1000000", "1"]
    p = subprocess.Popen(argv, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         start_new_session=True)  # the storm is in its process group
    try:
        while not out.exists() or out.stat().st_size == 0:
            time.sleep(0.01)
        time.sleep(2 + rng.random())
        wall_minus_mono = time.time() - time.monotonic()
        killed = time.monotonic()
        p.kill()
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # what is left of the storm
    import orjson

    lines = out.read_bytes().splitlines()
    header = orjson.loads(lines[0])["Header"]
    t0 = _dt.datetime.fromisoformat(header["start_time"]).timestamp() - wall_minus_mono
    stamps = [next(iter(orjson.loads(ln).values()))["timestamp"] for ln in lines[1:] if ln]
    execs = sum(1 for ln in lines[1:] if ln.startswith(b'{"Exec"'))
    last = max(stamps) / 1e9
    window = killed - (t0 + last)
    rate = execs / last if last > 0 else 0.0
    out.unlink()
    return window * 1000, window * rate


TIMED = ROOT / ".cache" / "bench" / "bin" / "timed"  # built by bench/record_bench.py


def overhead_run(busy_ms: int | None, n: int, d: Path) -> float:
    """Seconds the storm of `n` /bin/true took, measured inside (bench/workloads/timed.c),
    untraced (None) or under `record` with POLL_BUSY_MS=busy_ms."""
    out = d / "timed.txt"
    work = [str(TIMED), str(out), "sh", str(STORM), str(n), "1"]
    if busy_ms is None:
        subprocess.run(work, check=True, stdin=subprocess.DEVNULL)
    else:
        subprocess.run([sys.executable, "-c", RUNNER, str(busy_ms), "record", "-q",
                        "--as-root", "--backend", "bcc", "-o", str(d / "o.ndjson"), "--",
                        *work], check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    start, end = out.read_text().split()[:2]
    return (int(end) - int(start)) / 1e9


def overhead(variants: dict[str, int], runs: int, n: int) -> None:
    """Each variant's wall time over untraced, in rotation (untraced, A, B, untraced, ...):
    the median of the per-rotation ratios, and the medians' ratio."""
    times: dict[str, list[float]] = {"untraced": [], **{k: [] for k in variants}}
    with tempfile.TemporaryDirectory(prefix="proctrace-overhead-") as tmp:
        for _ in range(runs):
            times["untraced"].append(overhead_run(None, n, Path(tmp)))
            for name, busy in variants.items():
                times[name].append(overhead_run(busy, n, Path(tmp)))
    base = times["untraced"]
    print(f"storm 1x{n}: untraced median {statistics.median(base):.3f} s ({runs} rotations)")
    for name in variants:
        t = times[name]
        paired = statistics.median(x / b for x, b in zip(t, base, strict=True))
        print(f"{name}: median {statistics.median(t):.3f} s, ratio "
              f"{statistics.median(t) / statistics.median(base):.3f} (paired {paired:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--variant", action="append", default=None,
                    help="NAME=POLL_BUSY_MS (default: busy20=20, fixed100=100)")
    ap.add_argument("--overhead", type=int, metavar="N", default=None,
                    help="instead: the storm of N /bin/true's wall time per variant over "
                    "untraced, --runs rotations")
    args = ap.parse_args()
    variants: dict[str, int] = {}
    for v in args.variant or ["busy20=20", "fixed100=100"]:
        name, _, spec = v.partition("=")
        variants[name] = int(spec)
    if args.overhead:
        overhead(variants, args.runs, args.overhead)
        return
    rng = random.Random(13)
    got: dict[str, list[tuple[float, float]]] = {n: [] for n in variants}
    with tempfile.TemporaryDirectory(prefix="proctrace-sigkill-") as tmp:
        for _ in range(args.runs):
            for name, busy in variants.items():
                got[name].append(one(busy, Path(tmp), rng))
    for name, res in got.items():
        w = statistics.median(r[0] for r in res)
        n = statistics.median(r[1] for r in res)
        print(f"{name}: POLL_BUSY_MS={variants[name]}: "
              f"window {w:.0f} ms, ~{n:.0f} processes (median of {len(res)}; "
              f"windows {sorted(round(r[0]) for r in res)})")


if __name__ == "__main__":
    main()
